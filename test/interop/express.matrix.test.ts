/**
 * The client matrix through the Express middleware (`idempotency()` from `idem/express`,
 * defaults only), its handler doing the Stripe-like upstream's work.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createIdem, memoryStore } from 'idem';
import { idempotency } from 'idem/express';
import { clientMatrix } from './matrix.ts';

clientMatrix({
  name: 'express',
  afterReset: 'customer',
  async start(service) {
    const idem = createIdem({ store: memoryStore() });
    const app = express();
    app.post('/v1/customers', idempotency({ idem }), async (req, res) => {
      const raw = (req as typeof req & { rawBody?: Buffer }).rawBody;
      const answer = await service.answer(
        '/v1/customers',
        raw?.toString() ?? '',
        req.get('content-type') ?? '',
        req.get('idempotency-key') ?? '',
      );
      // a reset: the client's connection breaks after the work was done; the handler still answers
      if ('reset' in answer) req.socket.resetAndDestroy();
      const reply = 'reset' in answer ? answer.reply : answer;
      res.status(reply.status).set(reply.headers).send(reply.body);
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    };
  },
});
