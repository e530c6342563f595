/**
 * The DynamoDB client as the store sees it: anything with the AWS SDK v3 `send`, and the
 * command classes loaded lazily from `@aws-sdk/client-dynamodb` (the optional peer), so nothing
 * in idem imports the SDK until a DynamoDB store sends its first request.
 *
 * @module
 */
import { withDeadline } from '../../core/deadline.ts';
import { StoreUnavailableError } from '../../core/errors.ts';
import type { Item } from './item.ts';

/**
 * The part of an AWS SDK v3 `DynamoDBClient` the store uses. The store never destroys it.
 *
 * @example
 * import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
 * const client: DynamoDBClientLike = new DynamoDBClient({ region: 'eu-west-1' });
 */
export interface DynamoDBClientLike {
  send(command: unknown, options?: { abortSignal?: AbortSignal }): Promise<unknown>;
}

/** The commands the store sends, by their SDK name without `Command`. */
export type Operation =
  | 'PutItem'
  | 'UpdateItem'
  | 'DeleteItem'
  | 'GetItem'
  | 'BatchGetItem'
  | 'Scan'
  | 'CreateTable'
  | 'DescribeTable'
  | 'UpdateTimeToLive'
  | 'DescribeTimeToLive';

type Commands = Record<`${Operation}Command`, new (input: unknown) => unknown> & {
  DynamoDBClient: new (config: object) => DynamoDBClientLike & { destroy(): void };
};

let sdk: Commands | undefined;
let loading: Promise<Commands> | undefined;

/** The SDK's command classes, imported once. */
export function commands(): Commands | Promise<Commands> {
  if (sdk) return sdk;
  loading ??= import('@aws-sdk/client-dynamodb').then(
    (m) => {
      sdk = m as unknown as Commands;
      return sdk;
    },
    (e: unknown) => {
      loading = undefined;
      throw new StoreUnavailableError(
        'the DynamoDB store needs @aws-sdk/client-dynamodb: npm install @aws-sdk/client-dynamodb',
        { cause: e },
      );
    },
  );
  return loading;
}

/** What a conditional write answers when its condition failed: the item as it was, if sent. */
export interface ConditionFailed {
  failed: true;
  /** The item (`ReturnValuesOnConditionCheckFailure: 'ALL_OLD'`); undefined when absent or not sent. */
  item: Item | undefined;
}

/** True for the SDK's `ConditionalCheckFailedException`. */
export function isConditionFailed(e: unknown): boolean {
  return (e as { name?: unknown } | undefined)?.name === 'ConditionalCheckFailedException';
}

/** True when DynamoDB refused an item over its size limit. */
export function isItemTooLarge(e: unknown): boolean {
  const err = e as { name?: unknown; message?: unknown } | undefined;
  return err?.name === 'ValidationException' && /item size/i.test(String(err.message));
}

/**
 * Sends `operation` with `input` within `timeoutMs` (the SDK's own retries included), and turns
 * every failure but a failed condition into a `StoreUnavailableError`.
 */
export async function send(
  client: DynamoDBClientLike,
  operation: Operation,
  input: Record<string, unknown>,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const sdkCommands = sdk ?? (await commands());
  const command = new sdkCommands[`${operation}Command`](input);
  const abort = new AbortController();
  try {
    const sent = client.send(command, { abortSignal: abort.signal });
    return (await withDeadline(sent, timeoutMs, () => {
      abort.abort();
      return new StoreUnavailableError(`dynamodb ${operation} did not answer within ${timeoutMs} ms`);
    })) as Record<string, unknown>;
  } catch (e) {
    if (isConditionFailed(e) || isItemTooLarge(e) || e instanceof StoreUnavailableError) throw e;
    throw new StoreUnavailableError(`dynamodb ${operation} failed: ${(e as Error)?.message ?? e}`, {
      cause: e,
    });
  }
}

/**
 * Where the store's own client connects: like the SDK's `DynamoDBClientConfig`, the parts a spec can carry.
 *
 * @example
 * dynamodbStore({ table: 'idem', clientConfig: { region: 'eu-west-1' } });
 */
export interface ClientConfig {
  region?: string;
  /** e.g. `http://127.0.0.1:8000` for DynamoDB Local or dynalite. */
  endpoint?: string;
}

/**
 * A client the store owns: created on the first request (the SDK loads then), destroyed by `destroy`.
 * Region and credentials not given come from the environment, as for any SDK client.
 */
export function ownClient(config: ClientConfig): DynamoDBClientLike & { destroy(): void } {
  let made: (DynamoDBClientLike & { destroy(): void }) | undefined;
  let destroyed = false;
  return {
    async send(command, options) {
      if (destroyed) throw new StoreUnavailableError('the dynamodb store is closed');
      made ??= new (sdk ?? (await commands())).DynamoDBClient({ ...config });
      return made.send(command, options);
    },
    destroy() {
      destroyed = true;
      made?.destroy();
    },
  };
}
