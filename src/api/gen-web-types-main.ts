// `npm run gen:api`: writes web/src/types.ts from the API's zod schemas (see web-types.ts).
import { writeFileSync } from 'node:fs';
import { renderWebTypes } from './web-types.js';

export const WEB_TYPES_PATH = 'web/src/types.ts';

writeFileSync(WEB_TYPES_PATH, renderWebTypes());
process.stdout.write(`wrote ${WEB_TYPES_PATH}\n`);
