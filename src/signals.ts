/** What a running gateway process does on a signal. */
export interface SignalActions {
  /** SIGHUP: reload the config file. */
  reload(): void;
  /** The first SIGTERM or SIGINT: stop accepting, let open connections finish (shutdownGrace). */
  drain(signal: string): void;
  /** A second one while draining: close every connection now (HAProxy's and nginx's fast stop). */
  stopNow(signal: string): void;
}

/**
 * Handles the signals of `mapgate run`, a single process or a cluster primary alike. Install it
 * before the "mapgate started" line: whoever waits for that line may signal at once.
 */
export function handleSignals(actions: SignalActions): void {
  let draining = false;
  const stop = (signal: string): void => {
    if (draining) return actions.stopNow(signal);
    draining = true;
    actions.drain(signal);
  };
  process.on('SIGHUP', () => actions.reload());
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
