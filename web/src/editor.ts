// CodeMirror 6, in its own chunk: loaded the first time a file is opened.
import { EditorView, basicSetup } from 'codemirror';
import { EditorState, Compartment, type Extension } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { indentWithTab } from '@codemirror/commands';
import { oneDark } from '@codemirror/theme-one-dark';
import { effectiveTheme } from './main';

/** The language for a file name, each pack in its own chunk, loaded when first needed. */
async function language(name: string): Promise<Extension> {
  const ext = name.toLowerCase().split('.').pop() ?? '';
  switch (ext) {
    case 'js': case 'mjs': case 'cjs': case 'jsx': return (await import('@codemirror/lang-javascript')).javascript({ jsx: true });
    case 'ts': case 'tsx': case 'mts': return (await import('@codemirror/lang-javascript')).javascript({ typescript: true, jsx: ext === 'tsx' });
    case 'py': return (await import('@codemirror/lang-python')).python();
    case 'md': case 'markdown': return (await import('@codemirror/lang-markdown')).markdown();
    case 'json': return (await import('@codemirror/lang-json')).json();
    case 'rs': return (await import('@codemirror/lang-rust')).rust();
    case 'html': case 'htm': case 'svg': case 'xml': return (await import('@codemirror/lang-html')).html();
    case 'css': case 'scss': return (await import('@codemirror/lang-css')).css();
    default: return [];
  }
}

export interface Editor {
  text(): string;
  setText(text: string): void;
  destroy(): void;
}

export function createEditor(parent: HTMLElement, doc: string, name: string, onChange: () => void, onSave: () => void): Editor {
  const theme = new Compartment();
  const lang = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        basicSetup,
        keymap.of([indentWithTab, { key: 'Mod-s', preventDefault: true, run: () => { onSave(); return true; } }]),
        lang.of([]),
        theme.of(effectiveTheme() === 'dark' ? oneDark : []),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ 'aria-label': `Contents of ${name}`, autocapitalize: 'off', autocorrect: 'off', spellcheck: 'false' }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChange();
        }),
      ],
    }),
  });
  const onTheme = (e: Event) => view.dispatch({ effects: theme.reconfigure((e as CustomEvent).detail === 'dark' ? oneDark : []) });
  window.addEventListener('pd-theme', onTheme);
  void language(name).then((extension) => view.dispatch({ effects: lang.reconfigure(extension) })).catch(() => undefined);
  return {
    text: () => view.state.doc.toString(),
    setText: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    destroy: () => {
      window.removeEventListener('pd-theme', onTheme);
      view.destroy();
    },
  };
}
