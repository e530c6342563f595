/**
 * The client matrix through the gateway (`createGateway`, in process, defaults only) in front
 * of the Stripe-like upstream.
 */
import { createGateway } from 'idem/gateway';
import { clientMatrix } from './matrix.ts';

clientMatrix({
  name: 'gateway',
  afterReset: 'indeterminate',
  async start(service) {
    const gateway = await createGateway({ upstream: service.url, store: 'memory', purgeEvery: false });
    return { url: await gateway.listen(0), close: () => gateway.close() };
  },
});
