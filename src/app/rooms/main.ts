/**
 * The *Public rooms* page (`/rooms/`, linked from the landing page and from the chat page): find
 * rooms in the global directory and join them (the room then opens in Hydrogen), and publish the
 * user's own public rooms. Why it exists and how it logs in: src/app/directory.ts. Errors are shown
 * next to what failed; buttons are disabled while their request runs.
 */
import { ask, keepWorkerAlive, registerWorker } from "../worker.ts";
import { openClient, storedAccount } from "../signIn.ts";
import { DirectoryClient, HYDROGEN_SESSIONS_KEY, hydrogenRoomUrl, joinPath, ownRoom } from "../directory.ts";
import type { ClientStateEvent, OwnRoom, PublicRoom } from "../directory.ts";

const $ = (id: string): HTMLElement => document.getElementById(id)!;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Rooms asked for per page of the directory. */
const PAGE = 30;
/** How often the lists are fetched again while the page is open and idle (the directory fills in the background). */
const REFRESH_MS = 10_000;
/** The user's own rooms are read again every this many periodic looks (they change when the user acts). */
const OWN_EVERY = 6;

/** An element with a class and text. */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A list entry: the room's text on the left, one button on the right, an error line under both. */
function roomItem(roomId: string, title: string, lines: string[], action: { label: string; run: (button: HTMLButtonElement, error: HTMLElement) => Promise<void> }): HTMLLIElement {
  const li = el("li", "room");
  li.dataset["roomId"] = roomId;
  const text = el("div", "room-text");
  text.append(el("strong", "room-name", title));
  for (const line of lines) text.append(el("span", "room-line", line));
  const button = el("button", "room-action", action.label);
  button.type = "button";
  const error = el("p", "room-error");
  error.setAttribute("role", "alert");
  button.addEventListener("click", () => {
    button.disabled = true;
    error.textContent = "";
    busy++;
    action
      .run(button, error)
      .catch((err: unknown) => {
        error.textContent = message(err);
        button.disabled = false;
      })
      .finally(() => busy--);
  });
  li.append(text, button, error);
  return li;
}

/** Requests in flight started by a button: the periodic refresh waits while any runs. */
let busy = 0;

async function main(): Promise<void> {
  await registerWorker();
  keepWorkerAlive();
  const account = storedAccount();
  if (!account) {
    $("rooms-message").innerHTML = 'Sign in on the <a href="/">Hyphae page</a> first.';
    document.body.dataset["rooms"] = "signed-out";
    return;
  }
  const userId = account.userId;
  const client = new DirectoryClient(
    userId,
    async () => (await ask<{ loginToken: string }>({ hyphae: "login-token", userId } as { hyphae: string })).loginToken,
    localStorage,
  );
  $("find").hidden = false;
  $("publish").hidden = false;

  /** The rooms the user is in (to offer *Open* instead of *Join*). */
  let joined = new Set<string>();

  /** Opens a joined room in Hydrogen; without a Hydrogen session, signs Hydrogen in (the room is in its list). */
  const openInHydrogen = async (roomId: string): Promise<void> => {
    const url = hydrogenRoomUrl(localStorage.getItem(HYDROGEN_SESSIONS_KEY), userId, location.origin, roomId);
    if (url) return location.assign(url);
    openClient((await ask<{ loginToken: string }>({ hyphae: "login-token", userId } as { hyphae: string })).loginToken);
  };

  // --- Find and join --------------------------------------------------------------------------

  let term = "";
  let nextBatch: string | undefined;
  let shownKey = "";
  let pagesShown = 0;

  const directoryEntry = (room: PublicRoom): HTMLLIElement => {
    const lines: string[] = [];
    if (room.canonical_alias) lines.push(room.canonical_alias);
    if (room.topic) lines.push(room.topic);
    lines.push(`${room.num_joined_members} ${room.num_joined_members === 1 ? "member" : "members"}`);
    const title = room.name ?? room.canonical_alias ?? room.room_id;
    if (joined.has(room.room_id)) return roomItem(room.room_id, title, lines, { label: "Open", run: () => openInHydrogen(room.room_id) });
    return roomItem(room.room_id, title, lines, {
      label: "Join",
      run: async (button) => {
        button.textContent = "Joining…";
        try {
          const res = await client.request<{ room_id: string }>("POST", joinPath(room), {});
          joined.add(res.room_id);
          await openInHydrogen(res.room_id);
        } finally {
          button.textContent = "Join";
        }
      },
    });
  };

  /**
   * Fetches a page of the global directory (`since`: the next page) and shows it. A periodic look
   * leaves the list alone while a button's request runs (its row must stay where its error goes).
   */
  const loadDirectory = async (since?: string, periodic = false): Promise<void> => {
    const status = $("directory-status");
    try {
      joined = new Set((await client.request<{ joined_rooms: string[] }>("GET", "/_matrix/client/v3/joined_rooms")).joined_rooms);
      // Without a search term the GET form; with one the filter of the POST form.
      const page = term
        ? await client.request<{ chunk: PublicRoom[]; next_batch?: string; total_room_count_estimate?: number }>("POST", "/_matrix/client/v3/publicRooms", {
            limit: PAGE,
            filter: { generic_search_term: term },
            ...(since ? { since } : {}),
          })
        : await client.request<{ chunk: PublicRoom[]; next_batch?: string; total_room_count_estimate?: number }>("GET", `/_matrix/client/v3/publicRooms?limit=${PAGE}${since ? `&since=${encodeURIComponent(since)}` : ""}`);
      const list = $("directory-list");
      const key = JSON.stringify([term, [...joined].sort(), page]);
      // Unchanged: leave the list (and any error lines) alone.
      if (!since && (key === shownKey || (periodic && busy > 0))) return;
      if (!since) {
        list.replaceChildren();
        shownKey = key;
        pagesShown = 0;
      }
      pagesShown++;
      list.append(...page.chunk.map(directoryEntry));
      nextBatch = page.next_batch;
      $("more-button").hidden = nextBatch === undefined;
      const shown = list.children.length;
      status.textContent = shown === 0 ? (term ? `No public room matches “${term}”.` : "No public rooms yet on the servers reachable now.") : `${shown} ${shown === 1 ? "room" : "rooms"}${term ? ` matching “${term}”` : ""} from every server reachable now.`;
    } catch (err) {
      status.textContent = `The directory cannot be read: ${message(err)}`;
    }
  };

  /**
   * Has the worker fetch every reachable server's directory now (bounded: a slow server must not
   * hold the page), then shows the list again; the cached list stays shown meanwhile.
   */
  const lookEverywhere = async (): Promise<void> => {
    const looking = $("directory-looking");
    looking.textContent = "Asking the servers reachable now…";
    try {
      await ask({ hyphae: "directory-refresh" }, 20_000);
      looking.textContent = "";
    } catch (err) {
      looking.textContent = `Not every server could be asked: ${message(err)}`;
    }
    await loadDirectory();
  };

  const searchButton = $("search-button") as HTMLButtonElement;
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    term = ($("search") as HTMLInputElement).value.trim();
    shownKey = "";
    searchButton.disabled = true;
    void loadDirectory().finally(() => (searchButton.disabled = false));
  });
  const refreshButton = $("refresh-button") as HTMLButtonElement;
  refreshButton.addEventListener("click", () => {
    refreshButton.disabled = true;
    void Promise.all([lookEverywhere(), loadOwn()]).finally(() => (refreshButton.disabled = false));
  });
  const moreButton = $("more-button") as HTMLButtonElement;
  moreButton.addEventListener("click", () => {
    if (nextBatch === undefined) return;
    moreButton.disabled = true;
    void loadDirectory(nextBatch).finally(() => (moreButton.disabled = false));
  });

  // --- Publish ----------------------------------------------------------------------------------

  let ownKey = "";

  const ownEntry = (room: OwnRoom, visibility: string): HTMLLIElement => {
    const published = visibility === "public";
    const lines = [...(room.alias ? [room.alias] : []), published ? "In the directory" : "Not in the directory"];
    if (room.joinRule !== "public") lines.push(`Not open to everyone (join rule: ${room.joinRule ?? "invite"})`);
    const li = roomItem(room.roomId, room.name ?? room.alias ?? room.roomId, lines, {
      label: published ? "Unpublish" : "Publish",
      run: async () => {
        await client.request("PUT", `/_matrix/client/v3/directory/list/room/${encodeURIComponent(room.roomId)}`, { visibility: published ? "private" : "public" });
        await loadOwn();
        await loadDirectory();
      },
    });
    li.dataset["visibility"] = visibility;
    return li;
  };

  /** The user's public (or published) rooms that they may list, with their directory visibility. */
  async function loadOwn(periodic = false): Promise<void> {
    const status = $("publish-status");
    try {
      const ids = (await client.request<{ joined_rooms: string[] }>("GET", "/_matrix/client/v3/joined_rooms")).joined_rooms;
      const rooms = await Promise.all(
        ids.map(async (roomId) => ownRoom(roomId, await client.request<ClientStateEvent[]>("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`), userId)),
      );
      const mine = await Promise.all(
        rooms
          .filter((r) => r.mayPublish)
          .map(async (room) => ({
            room,
            visibility: (await client.request<{ visibility: string }>("GET", `/_matrix/client/v3/directory/list/room/${encodeURIComponent(room.roomId)}`)).visibility,
          })),
      );
      // Public rooms, and published rooms that stopped being public (so they can be unpublished).
      const rows = mine.filter((r) => r.room.joinRule === "public" || r.visibility === "public");
      rows.sort((a, b) => (a.room.name ?? a.room.roomId).localeCompare(b.room.name ?? b.room.roomId));
      const key = JSON.stringify(rows);
      if (key === ownKey || (periodic && busy > 0)) return;
      ownKey = key;
      $("own-list").replaceChildren(...rows.map((r) => ownEntry(r.room, r.visibility)));
      status.textContent = rows.length === 0 ? "None yet: create a public room in the chat (+ → Create Room → Public)." : "";
    } catch (err) {
      status.textContent = `Your rooms cannot be read: ${message(err)}`;
    }
  }

  await Promise.all([loadDirectory(), loadOwn()]);
  document.body.dataset["rooms"] = "ready";
  refreshButton.disabled = true;
  void lookEverywhere().finally(() => (refreshButton.disabled = false));
  // The global directory is fed from the reachable servers in the background: look again now and then.
  // The own list costs two requests per joined room: it is read again only every OWN_EVERY-th time.
  let tick = 0;
  const again = (): void => {
    const idle = busy === 0 && !document.hidden;
    const own = idle && ++tick % OWN_EVERY === 0;
    const run = Promise.all([idle && pagesShown <= 1 ? loadDirectory(undefined, true) : undefined, own ? loadOwn(true) : undefined]);
    void run.finally(() => setTimeout(again, REFRESH_MS));
  };
  setTimeout(again, REFRESH_MS);
  // Back to this tab (say, after creating a room in the chat): look again at once.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && busy === 0) void Promise.all([pagesShown <= 1 ? loadDirectory(undefined, true) : undefined, loadOwn(true)]);
  });
}

main().catch((err: unknown) => {
  $("rooms-message").textContent = `The room directory cannot start here: ${message(err)}`;
  document.body.dataset["rooms"] = "failed";
});
