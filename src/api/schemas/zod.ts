// The one zod of the API's schemas, extended with .openapi() so that a schema can carry its
// component name and the document generator (../openapi.ts) emits $refs between them. The
// extension only adds methods to zod's prototypes; parsing is unchanged.
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

export { z };
