/**
 * `npm run serve -- --export FILE` and `--import FILE` (README "Moving a homeserver"): the Node
 * runner's side of `src/export/homeserver.ts`. The identity seed lives in the data directory's
 * `identity.seed` file here (the Service Worker keeps it in the database), so these two move it
 * between that file and the export.
 */
import { openAsBlob } from "node:fs";
import { link, open, readFile, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Logger } from "../homeserver/context.ts";
import type { Store } from "../storage/store.ts";
import { StorageError } from "../storage/store.ts";
import { ExportFileError, ImportError, MIN_PASSPHRASE_LENGTH, exportChunks, importHomeserver, readExport } from "../export/homeserver.ts";
import type { ExportOptions, ImportResult, VerifiedExport } from "../export/homeserver.ts";
import { ConfigError, StartupError } from "./config.ts";
import type { NodeConfig } from "./config.ts";
import { SEED_FILE, readSeed, serverNameFromSeed, writeNewSeed } from "./identity.ts";
import { DATABASE_FILE, openNodeStore } from "./storage.ts";
import { fsyncDir } from "./durableFile.ts";

/** Environment variables the passphrase may come from. */
export const PASSPHRASE_ENV = { import: "HYPHAE_IMPORT_PASSPHRASE", export: "HYPHAE_EXPORT_PASSPHRASE" } as const;

/**
 * The passphrase for `--import` / `--export`: the first line of `--passphrase-file` (its line
 * ending dropped), else the environment variable. Never a command-line value (other users could
 * read it in the process list).
 */
export async function readPassphrase(kind: "import" | "export", passphraseFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  let passphrase: string | undefined;
  if (passphraseFile !== undefined) {
    try {
      passphrase = (await readFile(passphraseFile, "utf8")).split(/\r?\n/)[0];
    } catch (err) {
      throw new ConfigError(`cannot read --passphrase-file ${passphraseFile}: ${(err as Error).message}`);
    }
  } else {
    passphrase = env[PASSPHRASE_ENV[kind]];
  }
  if (!passphrase) throw new ConfigError(`--${kind} needs the passphrase: put it in ${PASSPHRASE_ENV[kind]} or in a file given with --passphrase-file FILE`);
  if (kind === "export" && passphrase.length < MIN_PASSPHRASE_LENGTH) throw new ConfigError(`the export passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters`);
  return passphrase;
}

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Opens the data directory's database, saying "stop the server" when a running one holds it. */
async function openStore(dataDir: string, open: (dir: string) => Promise<Store>): Promise<Store> {
  try {
    return await open(dataDir);
  } catch (err) {
    if (err instanceof StorageError) {
      const busy = /in use by process (\d+)/.exec(err.message);
      if (busy) throw new StartupError(`the data directory ${dataDir} is in use by a running server (process ${busy[1]}); stop it first`);
      throw new StartupError(`cannot open the database in ${dataDir}: ${err.message}`);
    }
    throw err;
  }
}

/** Test hooks. */
export interface ExportImportOptions {
  openStore?: (dataDir: string) => Promise<Store>;
  /** PBKDF2 iterations of a new export (tests). */
  iterations?: number;
}

/**
 * Writes the homeserver in `config.dataDir` to `file` (created with mode 0600; an existing file is
 * never overwritten). The file appears complete or not at all: it is written beside, fsynced and
 * then linked into place.
 */
export async function exportDataDir(config: NodeConfig, file: string, passphrase: string, logger: Logger, options: ExportImportOptions = {}): Promise<{ serverName: string; bytes: number }> {
  const seed = await readSeed(config.dataDir);
  if (!seed) throw new StartupError(`there is no homeserver in ${config.dataDir} (no ${SEED_FILE}); nothing to export`);
  if (await exists(file)) throw new StartupError(`${file} already exists; choose a new file name for the export`);
  const serverName = config.serverName ?? serverNameFromSeed(seed);
  const store = await openStore(config.dataDir, options.openStore ?? openNodeStore);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  let bytes = 0;
  try {
    // The database lock keeps every writer out, so pages are as consistent as one snapshot and memory stays small.
    const exportOptions: ExportOptions = { snapshot: false, ...(options.iterations !== undefined ? { iterations: options.iterations } : {}) };
    const fh = await open(tmp, "wx", 0o600);
    try {
      for await (const piece of exportChunks(store, { seed, serverName }, passphrase, exportOptions)) {
        await fh.write(piece);
        bytes += piece.length;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      // link, not rename: a file someone created at `file` meanwhile is not replaced.
      await link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new StartupError(`${file} already exists; choose a new file name for the export`);
      throw err;
    }
    await fsyncDir(dirname(file));
  } catch (err) {
    if (err instanceof ImportError || err instanceof TypeError) throw new StartupError(`cannot export ${config.dataDir}: ${err.message}`);
    throw err;
  } finally {
    await rm(tmp, { force: true });
    await store.close();
  }
  logger.info(`exported ${serverName} (${bytes} bytes) to ${file}`);
  return { serverName, bytes };
}

/** One line for a file or import problem. */
function importFailure(file: string, err: unknown): unknown {
  if (err instanceof ExportFileError || err instanceof ImportError) return new StartupError(`cannot import ${file}: ${err.message}`);
  return err;
}

/**
 * Imports the export `file` into `config.dataDir`, which must not hold a server yet (no seed, and
 * no rows in its database). The whole file is read and checked (passphrase, integrity, server
 * name) before anything is created; a failure while writing removes what the import created.
 * The seed file is written last, just before the import is marked finished.
 */
export async function importIntoDataDir(config: NodeConfig, file: string, passphrase: string, logger: Logger, options: ExportImportOptions = {}): Promise<ImportResult> {
  const { dataDir } = config;
  if (await readSeed(dataDir)) {
    throw new StartupError(`the data directory ${dataDir} already holds a homeserver (${SEED_FILE}); --import needs a new or empty data directory`);
  }
  let source: Blob;
  try {
    source = await openAsBlob(file);
  } catch (err) {
    throw new StartupError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let verified: VerifiedExport;
  try {
    verified = await readExport(source, passphrase);
  } catch (err) {
    throw importFailure(file, err);
  }
  const { serverName } = verified.manifest;
  const ours = config.serverName ?? serverNameFromSeed(verified.seed);
  if (ours !== serverName) {
    throw new StartupError(
      config.serverName === undefined
        ? `cannot import ${file}: it holds server "${serverName}"; set "server_name": "${serverName}" in the config file to import it`
        : `cannot import ${file}: it holds server "${serverName}", but server_name is "${config.serverName}"`,
    );
  }

  const dirExisted = await exists(dataDir);
  const dbExisted = await exists(join(dataDir, DATABASE_FILE));
  const store = await openStore(dataDir, options.openStore ?? openNodeStore);
  let seedWritten = false;
  let result: ImportResult;
  try {
    result = await importHomeserver(store, verified, passphrase, {
      seedInStore: false,
      beforeFinish: async () => {
        const written = await writeNewSeed(dataDir, verified.seed);
        if (!written.created) throw new StartupError(`another process created ${SEED_FILE} in ${dataDir} during the import`);
        seedWritten = true;
      },
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    // Leave the directory as it was: no seed, and no database if there was none.
    if (seedWritten) await rm(join(dataDir, SEED_FILE), { force: true });
    if (!dirExisted) await rm(dataDir, { recursive: true, force: true });
    else if (!dbExisted) {
      for (const f of ["", "-wal", "-shm", ".blobs", ".lock"]) await rm(join(dataDir, DATABASE_FILE + f), { recursive: true, force: true });
    }
    throw importFailure(file, err);
  }
  await store.close();
  logger.info(`imported ${serverName} from ${file} (${result.rows} rows${result.fileSchemaVersion !== undefined ? `, schema ${result.fileSchemaVersion}` : ""})`);
  return result;
}
