import { defineConfig } from 'vite';

// Relative asset URLs and hash routing: the app works under any `base_path` (e.g. /pocketdev/).
export default defineConfig({
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 700,
    // Fonts stay files, fetched only when a glyph in their range shows (see style.css).
    assetsInlineLimit: (file) => (file.endsWith('.woff2') ? false : undefined),
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8112',
      '/ws': { target: 'ws://127.0.0.1:8112', ws: true },
    },
  },
});
