/**
 * The chaos harness's private DynamoDB: dynalite keeping its tables on disk (LevelDB) in the
 * folder given, on the port given, so a SIGKILL and a restart on the same folder keep every
 * record (writes are in the OS's page cache once acknowledged). SIGUSR2 drops every client
 * connection. Prints `ready` once it listens.
 *
 * Run: node test/chaos/dynalite-server.ts <folder> <port>
 */
import dynalite from 'dynalite';

const [path, port] = process.argv.slice(2);
const server = dynalite({ path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
// longer than the SDK keeps idle sockets, so a request never races the server closing one
server.keepAliveTimeout = 120_000;
process.on('SIGUSR2', () => server.closeAllConnections());
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
