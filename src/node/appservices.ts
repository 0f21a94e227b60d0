/**
 * Reads application service registration files (`app_service_config_files`): YAML documents in
 * the format of the Application Service API "Registration". A bad file stops the start with one
 * line naming it.
 */
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import type { AppServiceRegistration } from "../homeserver/appservice/registration.ts";
import { AppServiceRegistry, RegistrationError, parseRegistration } from "../homeserver/appservice/registration.ts";
import { ConfigError } from "./config.ts";

/** Parses every registration file; `ConfigError` for an unreadable or invalid one, or a clash between them. */
export async function loadRegistrations(files: readonly string[]): Promise<AppServiceRegistration[]> {
  const out: AppServiceRegistration[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read application service registration ${file}: ${(err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parse(text);
    } catch (err) {
      throw new ConfigError(`application service registration ${file} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
    }
    try {
      out.push(parseRegistration(doc, file));
    } catch (err) {
      if (err instanceof RegistrationError) throw new ConfigError(`application service registration ${err.message}`);
      throw err;
    }
  }
  try {
    // Unique ids and as_tokens ("The homeserver MUST enforce this"); the server name does not matter here.
    new AppServiceRegistry(out, "check.invalid");
  } catch (err) {
    if (err instanceof RegistrationError) throw new ConfigError(err.message);
    throw err;
  }
  return out;
}
