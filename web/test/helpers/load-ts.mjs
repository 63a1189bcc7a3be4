// Loads a pure TypeScript module of src/ for a unit test: TypeScript's own transpiler strips the
// types (Node 20 cannot) and the result is imported from a data: URL. Only for modules whose
// imports are all `import type` (erased), which is what "pure" means here.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

export async function loadTs(path) {
  const source = readFileSync(join(src, path), 'utf8');
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    fileName: path,
  });
  if (/^\s*import\s[^;]*from\s/m.test(outputText)) throw new Error(`${path} imports at run time; only pure modules load here`);
  return import(`data:text/javascript;base64,${Buffer.from(outputText).toString('base64')}`);
}
