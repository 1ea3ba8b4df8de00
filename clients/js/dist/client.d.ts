import type { BackoffOptions, ClientEvents, ClientOptions, ClientStats, ConnectionState, Position } from "./types.js";
export declare function isValidChannel(ch: string): boolean;
/**
 * Full-jitter exponential back-off: a delay drawn uniformly from
 * [0, min(maxMs, baseMs * factor^attempt)).  attempt counts failures since
 * the last connection that went live, from 0.
 */
export declare function backoffCeiling(attempt: number, opts?: BackoffOptions): number;
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;
/** The `reconnect` message for these positions (docs/protocol.md "Resume"). */
export declare function buildResumeMessage(positions: Record<string, Position>): string;
type Listener<T> = (ev: T) => void;
export declare class OdinClient {
    private readonly urls;
    private readonly Ws;
    private readonly opts;
    private readonly backoffOpts;
    private readonly random;
    private readonly clock;
    private readonly ordered;
    private listeners;
    private _state;
    private ws;
    private urlIndex;
    private attempt;
    private stopped;
    /** Bumped by every openSocket and close(): after calling listeners,
     *  code that goes on checks the connection it works for is still the
     *  current one (a listener may have called close() or connect()). */
    private gen;
    private closeCalled;
    /** Subscribed channels (wanted, whether or not acked yet). */
    private channels;
    /** Last delivered position per channel (any channel, broadcasts too). */
    private pos;
    private resumeInFlight;
    private resumeSawReplay;
    private subsAwaitingAck;
    private queuedResume;
    private queuedSubscribe;
    private lastRx;
    private connectTimer;
    private heartbeatTimer;
    private backoffTimer;
    private _stats;
    constructor(options: ClientOptions);
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void;
    off<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): void;
    private emit;
    get state(): ConnectionState;
    /** The URL of the current (or next) connection. */
    get url(): string;
    stats(): ClientStats;
    /** Positions of the subscribed channels that have one. */
    positions(): Record<string, Position>;
    subscribedChannels(): string[];
    /** Starts (or restarts after close()) connecting. */
    connect(): void;
    /**
     * Subscribes to channels.  With `from`, each channel is resumed from
     * that position (e.g. the position of the snapshot the application
     * loaded): records after it are replayed, then live.
     */
    subscribe(channels: string | string[], from?: Position | Record<string, Position>): void;
    unsubscribe(channels: string | string[]): void;
    /** Closes the connection and stops reconnecting (state "closed"). */
    close(): void;
    private isOpen;
    private nextUrlIndex;
    private setState;
    private openSocket;
    private detach;
    /** Gives up a socket without waiting for its close (dead, too slow). */
    private abandon;
    private resetConnection;
    private clearTimers;
    /** The connection ended or never opened: back off, then connect again. */
    private failed;
    private onOpen;
    private goLive;
    private startResume;
    private finishResume;
    private sendSubscribe;
    private send;
    private sendRaw;
    private scheduleHeartbeat;
    private heartbeatTick;
    private onMessage;
    /** One refetch per channel of the failed request. */
    private resumeFailed;
    private onEnvelope;
    private addChannel;
}
export {};
