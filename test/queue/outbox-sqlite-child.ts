/**
 * A relay on an SQLite outbox in its own process, for the cross-process race: prints
 * `ok <key> <i>` for every event it publishes, stops on SIGTERM. Argument: the database path.
 */
import { createRelay, sqliteOutbox } from 'idem/outbox';

// exit with the parent: an orphan would poll for ever
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();

const relay = createRelay({
  outbox: sqliteOutbox({ path: process.argv[2]! }),
  publisher: {
    name: 'print',
    async publish(events) {
      for (const e of events) console.log(`ok ${e.key} ${(e.payload as { i: number }).i}`);
      return events.map(() => ({ ok: true }));
    },
  },
  batchSize: 5,
  poll: 5,
  signals: ['SIGTERM'],
});
await relay.start();
console.log('ready');
