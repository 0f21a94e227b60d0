/** A small room builder for the room tests: `await room("12").create(alice)`, then `.join(bob)` … */
import { naclSigner } from "../../../src/homeserver/crypto/ed25519.ts";
import type { SigningKey } from "../../../src/homeserver/crypto/signing.ts";
import { signJson } from "../../../src/homeserver/crypto/signing.ts";
import { redact } from "../../../src/homeserver/events/redaction.ts";
import type { EventWithId, Pdu } from "../../../src/homeserver/events/types.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { AuthResult } from "../../../src/homeserver/rooms/auth.ts";
import { authStateKeysFor, checkAuth } from "../../../src/homeserver/rooms/auth.ts";
import type { EventProto } from "../../../src/homeserver/rooms/build.ts";
import { buildEvent, eventRef } from "../../../src/homeserver/rooms/build.ts";
import type { RoomVersionRules } from "../../../src/homeserver/rooms/versions.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";

/** A deterministic seed per server name. */
export function seedFor(server: string): Uint8Array {
  const seed = new Uint8Array(32);
  for (let i = 0; i < server.length; i++) seed[i % 32] = (seed[i % 32]! * 31 + server.charCodeAt(i)) & 255;
  seed[31] = 7;
  return seed;
}

const keys = new Map<string, SigningKey>();
/** The signing key of a test server (`ed25519:test`). */
export function keyFor(server: string): SigningKey {
  let k = keys.get(server);
  if (!k) {
    k = { entity: server, keyId: "ed25519:test", signer: naclSigner(seedFor(server)) };
    keys.set(server, k);
  }
  return k;
}

const serverOf = (userId: string): string => userId.slice(userId.indexOf(":") + 1);

/** Extra knobs for one event. */
export interface SendOpts {
  stateKey?: string;
  redacts?: string;
  /** Override prev_events (IDs). */
  prev?: string[];
  /** Override auth_events (IDs). */
  auth?: string[];
  ts?: number;
  /** Which server signs (default: the sender's). */
  signer?: string;
  /** Whether the server of `join_authorised_via_users_server` co-signs (default true, as in send_join). */
  cosign?: boolean;
}

let roomCounter = 0;
let branchCounter = 0;

/** A linear (or, with `prev`, forked) test room whose state follows every accepted event. */
export class TestRoom {
  readonly version: RoomVersionRules;
  roomId = "";
  /** Every built event by ID. */
  readonly events: Map<string, EventWithId> = new Map();
  /** The current state: SK → event ID. */
  state = new Map<string, string>();
  /** Forward extremities. */
  last: string[] = [];
  depth = 0;
  ts = 1_000_000 + ++roomCounter * 100_000;

  constructor(version: string) {
    this.version = roomVersion(version)!;
  }

  /** The current state as checkAuth wants it (SK → PDU). */
  authState(state: Map<string, string> = this.state): Map<string, Pdu> {
    return new Map([...state].map(([k, id]) => [k, this.events.get(id)!.pdu]));
  }

  /** Builds an event on the current extremities without checking or applying it. */
  async build(sender: string, type: string, content: Record<string, unknown>, opts: SendOpts = {}): Promise<EventWithId> {
    const v = this.version;
    const authKeys = authStateKeysFor(type, opts.stateKey, sender, content, v);
    const authIds = opts.auth ?? authKeys.map((k) => this.state.get(k)).filter((x): x is string => x !== undefined);
    const prevIds = opts.prev ?? this.last;
    const ref = async (id: string) => eventRef(this.events.get(id)!, v);
    const maxPrevDepth = Math.max(0, ...prevIds.map((id) => this.events.get(id)!.pdu.depth));
    const proto: EventProto = {
      roomId: this.roomId || undefined,
      sender, type, content, stateKey: opts.stateKey, redacts: opts.redacts,
      prevEvents: await Promise.all(prevIds.map(ref)),
      authEvents: await Promise.all(authIds.map(ref)),
      depth: prevIds.length ? maxPrevDepth + 1 : 1,
      originServerTs: opts.ts ?? ++this.ts,
      origin: serverOf(sender),
    };
    const e = await buildEvent(proto, v, keyFor(opts.signer ?? serverOf(sender)));
    const via = content.join_authorised_via_users_server;
    if (typeof via === "string" && opts.cosign !== false && serverOf(via) !== serverOf(sender)) {
      // The authorising server signs the join too ("Restricted rooms", send_join).
      const co = await signJson(redact(e.pdu, v), keyFor(serverOf(via)));
      e.pdu.signatures = { ...e.pdu.signatures, ...(co.signatures as Record<string, Record<string, string>>) };
    }
    this.events.set(e.eventId, e);
    return e;
  }

  /** A fork: shares the events, copies the state and extremities. */
  branch(): TestRoom {
    const b = new TestRoom(this.version.id);
    (b as { events: Map<string, EventWithId> }).events = this.events;
    b.roomId = this.roomId;
    b.state = new Map(this.state);
    b.last = [...this.last];
    b.ts = this.ts + 50_000 * ++branchCounter;
    return b;
  }

  /** The state map (SK → event ID) after this room's extremities, i.e. its current state. */
  snapshot(): Map<string, string> {
    return new Map(this.state);
  }

  /** Checks an event against the current state. */
  check(e: EventWithId): AuthResult {
    return checkAuth(e.pdu, e.eventId, this.authState(), this.version);
  }

  /** Builds and checks an event; does not apply it. */
  async attempt(sender: string, type: string, content: Record<string, unknown>, opts: SendOpts = {}): Promise<AuthResult> {
    return this.check(await this.build(sender, type, content, opts));
  }

  /** Builds, checks (throwing when denied) and applies an event. */
  async send(sender: string, type: string, content: Record<string, unknown>, opts: SendOpts = {}): Promise<EventWithId> {
    const e = await this.build(sender, type, content, opts);
    const r = this.check(e);
    if (!r.allowed) throw new Error(`setup event ${type} by ${sender} denied: ${r.reason}`);
    this.apply(e);
    return e;
  }

  /** Applies an event to the current state and the extremities. */
  apply(e: EventWithId): void {
    if (e.pdu.state_key !== undefined) this.state.set(stateKeyOf(e.pdu.type, e.pdu.state_key), e.eventId);
    this.last = [e.eventId];
    if (!this.roomId) this.roomId = e.roomId;
  }

  /** `m.room.create` by `creator` (content: room_version, creator where the version needs it). */
  async create(creator: string, extra: Record<string, unknown> = {}): Promise<this> {
    if (!this.version.roomIdFromCreate) this.roomId = `!r${++roomCounter}:${serverOf(creator)}`;
    const content: Record<string, unknown> = { room_version: this.version.id, ...extra };
    if (this.version.creatorInContent) content.creator = creator;
    await this.send(creator, "m.room.create", content, { stateKey: "" });
    return this;
  }

  async member(sender: string, target: string, membership: string, extra: Record<string, unknown> = {}): Promise<EventWithId> {
    return this.send(sender, "m.room.member", { membership, ...extra }, { stateKey: target });
  }
  async join(user: string): Promise<this> {
    await this.member(user, user, "join");
    return this;
  }
  async invite(sender: string, target: string): Promise<this> {
    await this.member(sender, target, "invite");
    return this;
  }
  async ban(sender: string, target: string): Promise<this> {
    await this.member(sender, target, "ban");
    return this;
  }
  async joinRule(sender: string, joinRule: string, extra: Record<string, unknown> = {}): Promise<this> {
    await this.send(sender, "m.room.join_rules", { join_rule: joinRule, ...extra }, { stateKey: "" });
    return this;
  }
  async powerLevels(sender: string, content: Record<string, unknown>): Promise<this> {
    await this.send(sender, "m.room.power_levels", content, { stateKey: "" });
    return this;
  }
  /** Attempts a membership change without applying it. */
  async tryMember(sender: string, target: string, membership: string, extra: Record<string, unknown> = {}): Promise<AuthResult> {
    return this.attempt(sender, "m.room.member", { membership, ...extra }, { stateKey: target });
  }
}

/** Starts a test room of `version`. */
export const room = (version: string): TestRoom => new TestRoom(version);

export const alice = "@alice:a.test";
export const bob = "@bob:b.test";
export const carol = "@carol:c.test";
export const dave = "@dave:a.test";
