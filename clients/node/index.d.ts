import type { Writable } from 'node:stream';

export declare const STATUS: { readonly complete: 'complete'; readonly error: 'error'; readonly aborted: 'aborted' };
export type Status = 'complete' | 'error' | 'aborted';

export interface StartOptions {
  requestId?: string;        // context.awsRequestId
  expected?: number;         // payload chunks expected
  traceparent?: string;      // W3C traceparent of the function's span
  bundleId?: string;
  clientId?: string;
  startTime?: number;        // handler start, ms since epoch (default: now)
  explicitFirstUseful?: boolean;
  skipPayloadHash?: boolean;
}

export interface ChunkOptions {
  instrument?: string;
  firstUseful?: boolean;
  errorEnvelope?: boolean;
  trailer?: boolean;         // e.g. BUNDLE_COMPLETE: written, not a payload chunk
}

export interface EndOptions {
  status?: Status;
  // The SHA-256 the function announced: hex, base64 or 32 bytes. Anything
  // else is left out of the end event (Summary.declaredIgnored).
  declared?: string | Uint8Array;
  // Time the writer spent waiting for 'drain' after write() returned false,
  // in all and the longest single wait, in µs (sent as blocked_us and
  // blocked_max_us; the extension writes WriteBlockedTime/-Longest).
  blockedUs?: number;
  blockedMaxUs?: number;
}

export interface Summary {
  quoteId: string; delivered: number; bytes: number; sha256: string; status: Status; dropped: number;
  declaredIgnored?: boolean;
}

export declare class Stream {
  readonly quoteId: string;
  write(chunk: Buffer | string): boolean;
  writeChunk(chunk: Buffer | string, opts?: ChunkOptions): boolean;
  end(opts?: EndOptions): Summary;
}

export declare class Client {
  // coalesce: chunk events per datagram (1 to 64, default 64 or
  // STREAMLENS_COALESCE with fromEnv); maxWaitMs: how long they wait for
  // company (default 2).
  constructor(addr?: string, opts?: { maxInFlight?: number; coalesce?: number; maxWaitMs?: number });
  readonly coalesce: number;
  // Never throws: an address it cannot use (unix:, nonsense), or
  // STREAMLENS_ADDR=off, gives a client that writes through, with the
  // reason in `disabled`.
  static fromEnv(env?: NodeJS.ProcessEnv): Client;
  readonly disabled?: string;
  start(responseStream: Writable, opts?: StartOptions): Stream;
  stats(): { sent: number; dropped: number };
  close(): void;
}

export declare function encodeEvent(ev: Record<string, unknown>): string;
export declare function escape(value: unknown): string;
export declare function uuidv7(): string;
export declare function declaredHex(v: unknown): string;
export declare const MAX_DATAGRAM: number;
// Set on a response stream an explicit Stream records: the zero-code
// instrumentation (auto.js) leaves that stream alone.
export declare const EXPLICIT: unique symbol;
