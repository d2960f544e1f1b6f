// The report's notes of a handoff done: what a client sees change that a handoff does not
// carry (an address on another network than the service network, published ports).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressNotes } from '../../src/migration/source/commit.js';

test('the default bridge with a published port: its address and its port are named', () => {
  const notes = addressNotes(
    {
      name: 'web',
      networks: { bridge: '172.17.0.2' },
      createOptions: { HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '', HostPort: '18080' }], '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }] } } },
    },
    null,
    'b',
  );
  assert.deepEqual(notes, [
    "web's address 172.17.0.2 on network bridge is not kept: b's engine gave it one on its own bridge (connections to 172.17.0.2 here do not follow)",
    "web's published ports (18080->8080/tcp, 127.0.0.1:(any)->53/udp) are published on b's host now, no longer on this one",
  ]);
});

test('the service network address goes with the service: no note; nor for a container without a network', () => {
  assert.deepEqual(addressNotes({ name: 'svc', networks: { 'cloudlet-svc': '10.240.1.5' }, createOptions: {} }, '10.240.1.5', 'b'), []);
  assert.deepEqual(addressNotes({ name: 'n', networks: { none: null }, createOptions: { HostConfig: { NetworkMode: 'none' } } }, null, 'b'), []);
});
