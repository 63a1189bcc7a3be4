// The terminal WebSocket's control messages. Mirrors src/terminal/protocol.rs and
// docs/terminal-protocol.md; binary frames carry terminal bytes both ways.

export type State = 'starting' | 'running' | 'suspended' | 'exited' | 'stopped';
export type Status = 'working' | 'waiting' | 'needs_permission' | 'idle';

export type ServerMessage =
  | { type: 'hello'; instance: string; state: State }
  | { type: 'snapshot'; reason: 'connect' | 'resync'; cols: number; rows: number; alternate_screen: boolean }
  | { type: 'size'; cols: number; rows: number }
  | { type: 'status'; state: State; status?: Status | null; reason?: string | null }
  | { type: 'exit'; state: State; exit_code: number | null; reason: string }
  | { type: 'pong'; id?: unknown }
  | { type: 'error'; code: string; message: string };

export type ClientMessage =
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'scroll'; lines: number; col?: number; row?: number }
  | { type: 'paste'; data: string }
  | { type: 'ping'; id?: unknown };

/** Close codes (docs/terminal-protocol.md, section 9). */
export const Close = {
  normal: 1000,
  goingAway: 1001,
  abnormal: 1006,
  policy: 1008,
  internal: 1011,
  tooSlow: 4001,
} as const;

/** Largest frame the server takes whole. */
export const MAX_FRAME = 64 * 1024;
