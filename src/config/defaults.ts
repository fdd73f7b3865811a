/** What a config leaves out means this (durations as the file would write them). */
export const DEFAULTS = Object.freeze({
  adminListen: '127.0.0.1:9464',
  events: 'stdout',
  connectTimeout: '5s',
  idleTimeout: '30m',
  maxConnections: 256,
  shutdownGrace: '10s',
  interfacePoll: '5s',
  handshakeTimeout: '10s',
});
