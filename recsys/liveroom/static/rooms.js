"use strict";
// The list of rooms live now, refreshed every two seconds.
async function refresh() {
  const answer = await fetch("/live/rooms");
  const rooms = (await answer.json()).rooms;
  const body = document.querySelector("#room-table tbody");
  body.replaceChildren(...rooms.map((r) => {
    const row = document.createElement("tr");
    const link = `<a href="/live/rooms/${r.room}/page">${r.room}</a>`;
    const time = new Date(r.watermark * 1000).toISOString().replace("T", " ").slice(0, 19);
    row.innerHTML = `<td>${link}</td><td>${r.online}</td><td>${time}</td>`;
    return row;
  }));
  document.getElementById("count").textContent = `${rooms.length} live`;
}
refresh();
setInterval(refresh, 2000);
