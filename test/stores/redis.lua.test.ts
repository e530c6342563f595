import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GENERATED, LUA_DIR, renderLua } from '../../scripts/embed-lua.ts';
import { SCRIPTS } from '../../src/stores/redis/lua.generated.ts';

describe('redis Lua scripts', () => {
  it('lua.generated.ts is up to date with src/stores/redis/lua/*.lua (run scripts/embed-lua.ts)', () => {
    expect(readFileSync(GENERATED, 'utf8')).toBe(renderLua());
  });

  it('every script is named <cmd>-<numKeys>.lua, has a KEYS/ARGV/Output header and a matching sha1', () => {
    const files = readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua'));
    expect(files.sort()).toEqual([
      'claim-1.lua',
      'complete-1.lua',
      'get-1.lua',
      'release-1.lua',
      'renew-1.lua',
    ]);
    for (const [name, script] of Object.entries(SCRIPTS)) {
      const header = script.lua.slice(0, script.lua.indexOf(']]'));
      expect(header, name).toMatch(/KEYS\[1\]/);
      expect(header, name).toMatch(/Output/);
      expect(script.sha1).toBe(createHash('sha1').update(script.lua).digest('hex'));
    }
  });
});
