/**
 * A Lambda handler made idempotent with idem on DynamoDB. The event is an order; the side
 * effect is a card charge. A redelivered event (SQS, EventBridge and Lambda's own async retries
 * all redeliver) gets the first charge's answer instead of charging again.
 *
 * Deploy as is: the client reads the region and credentials from the Lambda environment, and
 * IDEM_TABLE names the table (see docs/stores/dynamodb.md for the CloudFormation snippet).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createIdem, FingerprintMismatchError, InProgressError } from 'idem';
import { dynamodbStore } from 'idem/dynamodb';

export interface OrderEvent {
  orderId: string;
  customer: string;
  amount: number;
}

export interface LambdaResult {
  statusCode: number;
  body: string;
}

/** Charges this container made: the example's side effect, counted by local.ts. */
export const charges: { orderId: string; amount: number; idempotencyKey: string }[] = [];

// At module scope: one client and one engine per container, reused by every invocation.
const idem = createIdem({
  store: dynamodbStore({ client: new DynamoDBClient({}), table: process.env.IDEM_TABLE ?? 'idem' }),
  ttl: '1h', // Powertools' expiresAfterSeconds: 3600
  lease: '30s', // in-progress expiry: keep it at or under the function's timeout
  onInProgress: 'wait', // a concurrent duplicate waits for the first one's answer
});

async function chargeCard(event: OrderEvent, idempotencyKey: string) {
  charges.push({ orderId: event.orderId, amount: event.amount, idempotencyKey });
  return { chargeId: `ch_${idempotencyKey.slice(0, 12)}`, amount: event.amount };
}

export async function handler(event: OrderEvent): Promise<LambdaResult> {
  try {
    const { value, replayed } = await idem.execute(
      idem.key('processOrder', event.orderId),
      (ctx) => chargeCard(event, ctx.downstreamKey),
      { input: { customer: event.customer, amount: event.amount } }, // payload validation
    );
    return { statusCode: 200, body: JSON.stringify({ ...value, replayed }) };
  } catch (error) {
    if (error instanceof FingerprintMismatchError || error instanceof InProgressError) {
      return { statusCode: error.status, body: JSON.stringify({ error: error.code }) };
    }
    throw error;
  }
}
