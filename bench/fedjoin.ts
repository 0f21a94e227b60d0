/**
 * Joining a remote room over federation (issue 9's acceptance figure): a server joins a room whose
 * state has 1,000 members through the whole handshake (make_join, send_join, verification of every
 * returned event, persisting state, auth chain and join), against the raw signature check + content
 * hash of the same events measured in the same run.
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { createRoom, sendEvent } from "../src/homeserver/roomserver/index.ts";
import { MemoryNetwork } from "../src/homeserver/federation/transport.ts";
import { verifyRoomState } from "../src/homeserver/federation/remoteMembership.ts";
import { verifyJsonSignature } from "../src/homeserver/crypto/signing.ts";
import { checkContentHash } from "../src/homeserver/events/hashes.ts";
import { redact } from "../src/homeserver/events/redaction.ts";
import type { Pdu } from "../src/homeserver/events/types.ts";
import { roomVersion } from "../src/homeserver/rooms/versions.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import type { Bench, Figure } from "./harness.ts";
import { seedDevice, versus } from "./harness.ts";

const MEMBERS = 1_000;

async function server(network: MemoryNetwork, name: string, seed: number): Promise<Homeserver> {
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(seed), serverName: name, federationTransport: network.transportFor(name) });
  network.attach(name, (r) => hs.handle(r));
  return hs;
}

export const fedjoinBench: Bench = async () => {
  const network = new MemoryNetwork();
  const a = await server(network, "a.bench", 7);
  const b = await server(network, "b.bench", 8);
  const { roomId } = await createRoom(a.services, "@creator:a.bench", { preset: "public_chat" });
  for (let i = 1; i < MEMBERS; i++) {
    const u = `@u${i}:a.bench`;
    await sendEvent(a.services, { roomId, sender: u, type: "m.room.member", stateKey: u, content: { membership: "join" } });
  }
  // Keep a copy of A's send_join answer: the events the baseline verifies.
  let answer: { state: Pdu[]; auth_chain: Pdu[] } | undefined;
  network.attach("a.bench", async (request) => {
    const response = await a.handle(request);
    if (!new URL(request.url).pathname.includes("/send_join/")) return response;
    const text = await response.text();
    answer = JSON.parse(text) as typeof answer;
    return new Response(text, { status: response.status, headers: response.headers });
  });
  const token = await seedDevice(b, "@joiner:b.bench", "D");
  const started = performance.now();
  const r = await b.handle(new Request(`http://localhost/_matrix/client/v3/join/${encodeURIComponent(roomId)}?via=a.bench`, {
    method: "POST", headers: { Authorization: `Bearer ${token}` }, body: "{}",
  }));
  const joinMs = performance.now() - started;
  if (r.status !== 200 || !answer) throw new Error(`bench join failed: ${r.status} ${await r.text()}`);

  const rules = roomVersion("12")!;
  const events = [...answer.state, ...answer.auth_chain];
  const aKey = a.services.signingKey.signer.publicKey;
  const verifier = b.services.verifier;
  // The raw primitive: each event's signature checked over its redacted form, and its content hash.
  const rawStart = performance.now();
  for (const pdu of events) {
    if (!(await verifyJsonSignature(redact(pdu, rules), "a.bench", () => aKey, verifier))) throw new Error("bench: bad signature");
    if (!(await checkContentHash(pdu))) throw new Error("bench: bad hash");
  }
  const rawMs = performance.now() - rawStart;
  // The verification step alone (format, IDs, signatures, hashes, auth rules, state checks).
  const keys = (server: string, keyId: string, validAt: number | undefined) => b.services.keyring.key(server, keyId, validAt);
  const verifyStart = performance.now();
  await verifyRoomState(roomId, rules, answer.state, answer.auth_chain, keys, verifier);
  const verifyMs = performance.now() - verifyStart;
  await a.close();
  await b.close();
  const what = `${events.length.toLocaleString("en-US")} events`;
  const figures: Figure[] = [
    versus(`join a remote room with ${MEMBERS.toLocaleString("en-US")} members (make_join, send_join, verify, persist)`, joinMs, "ms",
      `raw signature + content hash check of the same ${what}`, rawMs, "ms"),
    versus(`verifying the send_join answer (${what}: format, IDs, signatures, hashes, auth rules)`, verifyMs, "ms",
      `raw signature + content hash check of the same ${what}`, rawMs, "ms"),
  ];
  return figures;
};
