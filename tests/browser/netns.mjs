// A network namespace joined to the host by a veth pair: one with the host -> namespace direction
// shaped by `tc` (a viewer inside it has a slow downlink from the server on the host), or one
// with IPv6 addresses only.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Why this process cannot make a namespace with a veth pair and a tbf qdisc, or null (probed). */
export function netnsUnavailable() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'needs root (creates a network namespace, a veth pair and a tc qdisc)';
  }
  for (const [tool, pkg] of [['ip', 'iproute2'], ['tc', 'iproute2']]) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      return `needs \`${tool}\` (Debian package ${pkg})`;
    }
  }
  // All three inside a throwaway namespace, so that nothing is left on the host.
  const probe = `rcprobe${process.pid}`;
  try {
    run('ip', 'netns', 'add', probe);
    const inside = (...args) => run('ip', 'netns', 'exec', probe, ...args);
    inside('ip', 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1');
    inside('tc', 'qdisc', 'add', 'dev', 'probe0', 'root', 'tbf', 'rate', '400kbit', 'burst', '5000', 'latency', '200ms');
  } catch (e) {
    return `cannot create a network namespace, a veth pair and a tbf qdisc here: ${e.message}`;
  } finally {
    quiet('ip', 'netns', 'del', probe);
  }
  return null;
}

/**
 * Creates namespace `ringcast-<tag>-<pid>` joined to the host by a veth pair on a /30 of
 * 10.213.0.0/16, and shapes what the host sends into it to `kbit` kbit/s (tbf on the host end's
 * egress, which is the namespace end's ingress: the server -> viewer direction). Returns
 * `{ name, hostAddr, nsAddr, hostIf, describe, destroy() }`; `destroy` is idempotent and also runs
 * when the process exits or is interrupted.
 */
export function shapedNetns({ tag, kbit }) {
  const ns = vethNetns({ tag });
  try {
    // 400 kbit/s is 50 kB/s: a 5 kB bucket is 100 ms of it, and at most 200 ms of packets wait
    // in the queue (a home router's buffer) before tbf drops.
    run('tc', 'qdisc', 'add', 'dev', ns.hostIf, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '5000', 'latency', '200ms');
  } catch (e) {
    ns.destroy();
    throw e;
  }
  const describe = () => quiet('tc', '-s', 'qdisc', 'show', 'dev', ns.hostIf).trim();
  return { ...ns, describe };
}

/**
 * Creates namespace `ringcast-<tag>-<pid>` joined to the host by a veth pair on a /30 of
 * 10.213.0.0/16 (`hostAddr` on the host end, `nsAddr` inside; its loopback is up). Returns
 * `{ name, hostAddr, nsAddr, hostIf, destroy() }`; `destroy` is idempotent and also runs when the
 * process exits or is interrupted.
 */
export function vethNetns({ tag }) {
  const name = `ringcast-${tag}-${process.pid}`;
  const hostIf = `rc${tag}${process.pid}h`.slice(-15);
  const nsIf = `rc${tag}${process.pid}n`.slice(-15);
  const subnet = freeSubnet();
  const hostAddr = `10.213.${subnet}.1`;
  const nsAddr = `10.213.${subnet}.2`;
  // Deleting the namespace deletes its veth end, and with it the host end and any qdisc on it.
  const destroy = removedOnExit(() => {
    quiet('ip', 'netns', 'del', name);
    quiet('ip', 'link', 'del', hostIf);
  });
  try {
    run('ip', 'netns', 'add', name);
    run('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
    run('ip', 'link', 'set', nsIf, 'netns', name);
    run('ip', 'addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    run('ip', 'link', 'set', hostIf, 'up');
    run('ip', 'netns', 'exec', name, 'ip', 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
    run('ip', 'netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up');
    run('ip', 'netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (e) {
    destroy();
    throw e;
  }
  return { name, hostAddr, nsAddr, hostIf, destroy };
}

/** Why IPv6 cannot be used here (disabled on the host), or null. */
export function ipv6Unavailable() {
  try {
    if (readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim() === '1') {
      return 'IPv6 is disabled on this host (net.ipv6.conf.all.disable_ipv6 = 1)';
    }
  } catch {
    return 'this kernel has no IPv6 (no /proc/sys/net/ipv6)';
  }
  return null;
}

/**
 * Creates namespace `ringcast-<tag>-<pid>` with IPv6 addresses only: a veth pair to the host on a
 * ULA /64 of fd00:213::/48 (`hostAddr` ::1 on the host end, `nsAddr` ::2 inside), no IPv4 address
 * and no route but that /64 (its loopback is up). Addresses skip duplicate address detection, so
 * they are usable at once. Returns `{ name, hostAddr, nsAddr, hostIf, destroy() }`; `destroy` is
 * idempotent and also runs when the process exits or is interrupted.
 */
export function ipv6OnlyNetns({ tag }) {
  const name = `ringcast-${tag}-${process.pid}`;
  const hostIf = `rc${tag}${process.pid}h`.slice(-15);
  const nsIf = `rc${tag}${process.pid}n`.slice(-15);
  const prefix = freeIpv6Prefix();
  const hostAddr = `${prefix}::1`;
  const nsAddr = `${prefix}::2`;
  const destroy = removedOnExit(() => {
    quiet('ip', 'netns', 'del', name);
    quiet('ip', 'link', 'del', hostIf);
  });
  try {
    run('ip', 'netns', 'add', name);
    run('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
    run('ip', 'link', 'set', nsIf, 'netns', name);
    run('ip', 'netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0');
    run('ip', 'addr', 'add', `${hostAddr}/64`, 'dev', hostIf, 'nodad');
    run('ip', 'link', 'set', hostIf, 'up');
    run('ip', '-n', name, 'addr', 'add', `${nsAddr}/64`, 'dev', nsIf, 'nodad');
    run('ip', '-n', name, 'link', 'set', nsIf, 'up');
    run('ip', '-n', name, 'link', 'set', 'lo', 'up');
  } catch (e) {
    destroy();
    throw e;
  }
  return { name, hostAddr, nsAddr, hostIf, destroy };
}

/**
 * Makes `remove` (which deletes what a test created on the host) idempotent, and runs it when
 * the process exits or is interrupted. Returns the idempotent version, for the test's `finally`.
 */
export function removedOnExit(remove) {
  let removed = false;
  const destroy = () => {
    if (removed) return;
    removed = true;
    process.off('exit', destroy);
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    remove();
  };
  // Exiting (not re-raising the signal) lets the other 'exit' hooks run: the server's, Playwright's.
  const interrupted = (signal) => {
    destroy();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', destroy);
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  return destroy;
}

/** Runs `cmd` with `args`; its stdout, or an Error with its stderr. */
export function run(cmd, ...args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed: ${(e.stderr || e.message).toString().trim()}`);
  }
}

/** Like `run`, but '' instead of an error (for cleanup and probes). */
export function quiet(cmd, ...args) {
  try {
    return run(cmd, ...args);
  } catch {
    return '';
  }
}

/** A third octet for 10.213.x.0/30 that no interface of the host uses yet. */
export function freeSubnet() {
  const used = quiet('ip', '-o', '-4', 'addr', 'show');
  for (let i = 0; i < 32; i++) {
    const x = Math.floor(Math.random() * 256);
    if (!used.includes(`10.213.${x}.`)) return x;
  }
  throw new Error('no free /30 in 10.213.0.0/16');
}

/** A /64 `fd00:213:x` (the first 48 bits; `::1` makes an address) no interface of the host uses yet. */
export function freeIpv6Prefix() {
  const used = quiet('ip', '-o', '-6', 'addr', 'show');
  for (let i = 0; i < 32; i++) {
    const prefix = `fd00:213:${Math.floor(Math.random() * 0x10000).toString(16)}`;
    if (!used.includes(`${prefix}:`)) return prefix;
  }
  throw new Error('no free /64 in fd00:213::/48');
}
