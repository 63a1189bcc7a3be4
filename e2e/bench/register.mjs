// Lets Node 20 run the benchmarks' TypeScript as it is (Node 22.6+ strips types itself, but
// not extensionless imports such as `../server`): `node --import ./bench/register.mjs bench/page.ts`.
import { register } from 'node:module';

register('./ts-loader.mjs', import.meta.url);
