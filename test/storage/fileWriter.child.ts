/**
 * Child process for the kill test in sqliteFile.test.ts: writes numbered rows through the file
 * store as fast as it can and prints each row's number once its write() resolved. The parent
 * SIGKILLs it mid-stream and checks that every printed row is in the file, and every printed
 * media_content value in its blob file (media_content is a blob table by default).
 */
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { pos } from "../../src/storage/store.ts";

const path = process.argv[2];
if (!path) throw new Error("usage: fileWriter.child.ts <path>");
const store = await openSqliteFileStore(path);
for (let i = 0; ; i++) {
  await store.write(async (tx) => {
    tx.put("settings", pos(i), { i, pad: "x".repeat(200) });
    tx.put("media_content", pos(i), new Uint8Array(20_000 + i).fill(i & 0xff));
  });
  process.stdout.write(`${i}\n`);
}
