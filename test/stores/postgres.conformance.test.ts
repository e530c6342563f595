import { postgresStore } from 'idem/postgres';
import { testStore } from 'idem/testing';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const schema = uniqueName('idem_pg');

if (up) {
  testStore({
    name: 'postgres',
    create: () => postgresStore({ connectionString: PG_URL, schema }),
    destroy: async () => {
      const admin = adminPool();
      await dropSchema(admin, schema);
      await admin.end();
    },
    processStore: {
      module: new URL('./fixtures/postgres-factory.ts', import.meta.url).pathname,
      arg: { connectionString: PG_URL, schema, max: 3 }, // 8 processes share max_connections
    },
  });
}
