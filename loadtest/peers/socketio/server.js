// The peer for Marquee's load test: a Socket.IO 4 node with the Redis adapter, so several nodes
// on one Redis form a cluster. Clients join a room with a `subscribe` event; `POST /publish`
// with {"room", "data"} emits `pub` to that room on every node.
//
// Environment: PORT (required), REDIS_URL (default redis://127.0.0.1:6379), PREFIX (adapter
// key prefix, default "socket.io").
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT);
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const prefix = process.env.PREFIX || "socket.io";

let io; // set in main() before the listener starts

async function main() {
  const httpServer = http.createServer((req, res) => {
    if (req.method === "POST" && req.url === "/publish") {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        try {
          const { room, data } = JSON.parse(Buffer.concat(chunks).toString());
          io.to(room).emit("pub", data);
          res.writeHead(200, { "content-type": "application/json" });
          res.end('{"ok":true}');
        } catch (e) {
          res.writeHead(400, { "content-type": "application/json" });
          res.end(JSON.stringify({ code: "bad_request", message: String(e) }));
        }
      });
      return;
    }
    if (req.url === "/health") {
      res.writeHead(200);
      res.end("ok");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  httpServer.keepAliveTimeout = 60_000;

  io = new Server(httpServer, {
    transports: ["websocket"],
    perMessageDeflate: false,
    serveClient: false,
  });
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, { key: prefix }));

  io.on("connection", (socket) => {
    socket.on("subscribe", (room) => {
      socket.join(String(room));
      socket.emit("subscribed", room);
    });
  });

  httpServer.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
