// A stock MQTT client (mqtt.js, the npm package mqtt, over its WebSocket transport) that a test drives line
// by line, like stomp_driver.mjs.
//
//   node mqtt_driver.mjs <ws url>
//
// stdin: one JSON command per line; stdout: one JSON event per line. Commands:
//   {"op": "connect", "password", "clientId"?, "clean"?, "keepalive"?}  -> {"ev": "connack", "returnCode"}
//   {"op": "publish", "topic", "payload", "qos", "tag"}                -> {"ev": "published", "tag", "error"?}
//                                                                          (QoS 1: once the PUBACK came)
//   {"op": "subscribe", "topics": {topic: qos}, "tag"}                  -> {"ev": "suback", "tag", "granted"}
//   {"op": "end"}                                                       -> {"ev": "ended"}
// Always: {"ev": "message", "topic", "payload", "qos", "dup"} for a PUBLISH from the server, {"ev": "close"} when
// the connection closes, {"ev": "error", "message"} for a client error. Automatic reconnect is off.
import mqtt from 'mqtt';
import readline from 'node:readline';

const url = process.argv[2];
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
let client = null;

const ops = {
    connect: (cmd) => {
        client = mqtt.connect(url, {
            protocolVersion: 4,
            username: 'magpie',
            password: cmd.password,
            clientId: cmd.clientId ?? '',
            clean: cmd.clean ?? true,
            keepalive: cmd.keepalive ?? 30,
            reconnectPeriod: 0,
            connectTimeout: 10000,
        });
        client.on('connect', (ack) => emit({ ev: 'connack', returnCode: ack.returnCode, sessionPresent: ack.sessionPresent }));
        client.on('message', (topic, payload, packet) =>
            emit({ ev: 'message', topic, payload: payload.toString(), qos: packet.qos, dup: packet.dup }));
        client.on('close', () => emit({ ev: 'close' }));
        client.on('error', (e) => emit({ ev: 'error', message: String(e.message || e), code: e.code ?? null }));
    },
    publish: (cmd) => client.publish(cmd.topic, cmd.payload, { qos: cmd.qos ?? 1 },
        (err) => emit({ ev: 'published', tag: cmd.tag, error: err ? String(err.message || err) : null })),
    subscribe: (cmd) => client.subscribe(
        Object.fromEntries(Object.entries(cmd.topics).map(([t, qos]) => [t, { qos }])), (err, granted) =>
        emit({ ev: 'suback', tag: cmd.tag, error: err ? String(err.message || err) : null,
            granted: (granted || []).map((g) => ({ topic: g.topic, qos: g.qos })) })),
    end: () => client.end(false, () => emit({ ev: 'ended' })),
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
