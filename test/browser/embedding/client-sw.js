// The third-party client's own Service Worker (a classic script). Three lines embed Hyphae:
// importScripts of Hyphae's worker, before the client's own handlers, which keep working.
importScripts("/hyphae-sw.js");

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.pathname === "/client-own-route") event.respondWith(new Response("answered by the client's own worker"));
});
