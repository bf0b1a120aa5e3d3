// A stock STOMP client (@stomp/stompjs over the ws package) that a test drives line by line.
//
//   node stomp_driver.mjs <ws url>
//
// stdin: one JSON command per line; stdout: one JSON event per line. Commands:
//   {"op": "connect", "headers": {...}, "heartbeat": [outgoing, incoming]}  -> {"ev": "connected", "headers"}
//   {"op": "send", "destination", "body", "headers"?, "receipt"?}          -> {"ev": "receipt", "receipt", "headers"}
//   {"op": "subscribe", "destination", "headers"?, "id"?, "receipt"?}      -> {"ev": "message", "headers", "body"}
//                                                       (and {"ev": "receipt", "receipt"} when one was asked)
//   {"op": "unsubscribe", "id"}
//   {"op": "ack", "ack"} / {"op": "nack", "ack"}   (the ack header of a message this client received)
//   {"op": "disconnect"}                                                   -> {"ev": "disconnected"}
//   {"op": "drop"}  close the WebSocket without DISCONNECT (a lost connection)
// Always: {"ev": "error", "headers", "body"} for an ERROR frame, {"ev": "close", "code", "reason"} when the
// WebSocket closes. stompjs' automatic reconnect is off: the test decides.
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import readline from 'node:readline';

const url = process.argv[2];
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
const subs = new Map(); // subscription id -> stompjs subscription
const pending = new Map(); // ack id -> received message (to ack/nack)
let client = null;

function connect(cmd) {
    const [outgoing, incoming] = cmd.heartbeat || [0, 0];
    client = new Client({
        webSocketFactory: () => {
            const ws = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
            ws.on('close', (code, reason) => emit({ ev: 'close', code, reason: reason.toString() }));
            ws.on('upgrade', (res) => emit({ ev: 'upgrade', protocol: res.headers['sec-websocket-protocol'] || null }));
            ws.on('unexpected-response', (req, res) => emit({ ev: 'refused', status: res.statusCode }));
            return ws;
        },
        connectHeaders: cmd.headers || {},
        heartbeatOutgoing: outgoing,
        heartbeatIncoming: incoming,
        reconnectDelay: 0,
        onConnect: (frame) => emit({ ev: 'connected', headers: frame.headers }),
        onStompError: (frame) => emit({ ev: 'error', headers: frame.headers, body: frame.body }),
        onDisconnect: () => emit({ ev: 'disconnected' }),
        onWebSocketError: () => emit({ ev: 'wserror' }),
    });
    client.activate();
}

function subscribe(cmd) {
    const headers = { ...(cmd.headers || {}) };
    if (cmd.id) headers.id = cmd.id;
    if (cmd.receipt) {
        headers.receipt = cmd.receipt;
        client.watchForReceipt(cmd.receipt, (frame) => emit({ ev: 'receipt', receipt: cmd.receipt, headers: frame.headers }));
    }
    const sub = client.subscribe(cmd.destination, (m) => {
        if (m.headers.ack) pending.set(m.headers.ack, m);
        emit({ ev: 'message', headers: m.headers, body: m.body });
    }, headers);
    subs.set(sub.id, sub);
    emit({ ev: 'subscribed', id: sub.id });
}

function send(cmd) {
    const headers = { ...(cmd.headers || {}) };
    if (cmd.receipt) {
        headers.receipt = cmd.receipt;
        client.watchForReceipt(cmd.receipt, (frame) => emit({ ev: 'receipt', receipt: cmd.receipt, headers: frame.headers }));
    }
    client.publish({ destination: cmd.destination, body: cmd.body, headers });
}

const ops = {
    connect,
    subscribe,
    send,
    unsubscribe: (cmd) => subs.get(cmd.id)?.unsubscribe(),
    ack: (cmd) => { pending.get(cmd.ack)?.ack(); pending.delete(cmd.ack); },
    nack: (cmd) => { pending.get(cmd.ack)?.nack(); pending.delete(cmd.ack); },
    disconnect: () => client.deactivate(),
    drop: () => client.forceDisconnect(),
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    try {
        ops[cmd.op](cmd);
    } catch (e) {
        emit({ ev: 'exception', op: cmd.op, message: String(e) });
    }
}).on('close', () => process.exit(0));
