// The plugin token's file: read it, and replace it atomically (0600, synced, renamed).

import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export function readToken(tokenFile) {
  try {
    return readFileSync(tokenFile, 'utf8').trim() || null;
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

/** Write the token to a new 0600 file beside the old one, sync it, rename it over: a reader
 * (or a crash) sees the old token or the new one, never a part of either. */
export function writeToken(tokenFile, token) {
  mkdirSync(dirname(tokenFile), { recursive: true });
  const tmp = join(dirname(tokenFile), `.${basename(tokenFile)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${token}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, tokenFile);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
