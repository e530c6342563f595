import { testStore } from 'idem/testing';
import { Redis } from 'ioredis';
import { redisStore } from '../../src/stores/redis/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const prefix = uniqueName('idem_redis');

if (up) {
  testStore({
    name: 'redis',
    selfExpiring: true,
    create: () => redisStore({ url: SERVICES.redis, prefix }),
    destroy: async () => {
      const admin = new Redis(SERVICES.redis);
      await deletePrefix(admin, prefix);
      await admin.quit();
    },
    processStore: {
      module: new URL('./fixtures/redis-factory.ts', import.meta.url).pathname,
      arg: { url: SERVICES.redis, prefix },
    },
  });
}
