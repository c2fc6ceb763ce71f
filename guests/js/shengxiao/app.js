// shengxiao-js: a Tongdao content module written in JavaScript.
//
// It serves the service "SX" (生肖运势, the day's outlook by Chinese zodiac animal):
//
// * bulletin       - one text per zodiac animal, keyed by the subscriber attribute
//                    `zodiac` (`rat` … `pig`), plus a fallback for subscribers who
//                    have not chosen one. The words depend only on the push date and
//                    the animal, so a push the host asks for again gets the same
//                    text. If the partner's content library has a collection `tips`,
//                    the tip of the day is added to every text.
// * onMo           - an animal's name (`鼠`, `属鼠`, `rat`, full-width letters too)
//                    stores it in the `zodiac` attribute and answers with today's
//                    outlook for it; `查询` says which animal is stored; `再来` /
//                    `MORE` draws a lucky number with the host's randomness; anything
//                    else is counted per subscriber in the key-value store and
//                    acknowledged with the help text.
// * onSubscribe    - a welcome text.
// * onUnsubscribe  - nothing (`undefined` is the WIT `none`).
//
// Build it with guests/js/build.sh (componentize-js, pinned in guests/js/package.json)
// against wit/v1.0.0, world `content-module`. The `tongdao:partner/...` imports below
// are not npm packages: componentize-js binds them to the component's WIT imports.
//
// The conventions of componentize-js (the partner guide, docs/guide-js.md, has them
// all): WIT names become camelCase (`on-mo` → `onMo`, `received-at-ms` →
// `receivedAtMs`); s64/u64 are BigInt; a variant is `{ tag, val }`; an enum is its
// case name as a string; option<T> is the value or `undefined`; a result's ok side is
// the return value and its error side is thrown: imports throw an Error whose
// `payload` is the WIT error, and an export reports `module-error` by throwing it.
// Any other exception escaping a call is a trap, which the host counts as a crash of
// this module version.

import { write as log } from 'tongdao:partner/log@1.0.0';
import { utcOffsetSeconds } from 'tongdao:partner/clock@1.0.0';
import { nextU64 } from 'tongdao:partner/random@1.0.0';
import { incr } from 'tongdao:partner/kv@1.0.0';
import { count, get as getItem } from 'tongdao:partner/content@1.0.0';
import { getAttribute, setAttribute } from 'tongdao:partner/subscribers@1.0.0';

const SERVICE = 'SX';

/** The subscriber attribute that holds the animal's key (e.g. `rat`). */
const ATTRIBUTE = 'zodiac';

/** The content library collection whose items are added as the tip of the day. */
const TIPS = 'tips';

const ANIMALS = [
  { key: 'rat', name: '鼠' },
  { key: 'ox', name: '牛' },
  { key: 'tiger', name: '虎' },
  { key: 'rabbit', name: '兔' },
  { key: 'dragon', name: '龙' },
  { key: 'snake', name: '蛇' },
  { key: 'horse', name: '马' },
  { key: 'goat', name: '羊' },
  { key: 'monkey', name: '猴' },
  { key: 'rooster', name: '鸡' },
  { key: 'dog', name: '狗' },
  { key: 'pig', name: '猪' },
];

const OUTLOOKS = [
  '贵人运旺，遇事不妨多问一句',
  '适合整理手头的事，清爽带来好心情',
  '财运平稳，量入为出最安心',
  '灵感不断，记下来的想法日后有用',
  '与家人多聊几句，温暖加倍回来',
  '节奏放慢一点，细节里藏着好运',
  '精力充沛，适合运动和出行',
  '小有波折但无大碍，耐心就能化解',
];

const LUCKY = ['东方', '南方', '西方', '北方', '东南', '西北'];

/** Texts that ask for a lucky number (compared after `keyword`). */
const MORE_WORDS = new Set(['MORE', '再来']);

/**
 * A business error: the host records it and sends nothing. `tag` is the case of
 * the WIT variant `module-error` (`invalid-request`, `no-content`, `host-failure`,
 * `other`); componentize-js reads the thrown value's `payload`.
 */
class ModuleError extends Error {
  constructor(tag, message) {
    super(message);
    this.payload = { tag, val: message };
  }
}

/** FNV-1a (32 bit) of the UTF-8 bytes: the same on every call and every build. */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Full-width ASCII (`ＲＡＴ`, `　`) to half-width, trimmed, upper case. */
function keyword(text) {
  const half = text.replace(/[\uff01-\uff5e]/g, (c) =>
    String.fromCharCode(c.charCodeAt(0) - 0xfee0),
  ).replace(/\u3000/g, ' ');
  return half.trim().toUpperCase();
}

function checkService(service) {
  if (service !== SERVICE) {
    throw new ModuleError('invalid-request', `unknown service code ${JSON.stringify(service)}`);
  }
}

/** `[year, month, day]` of a `YYYY-MM-DD` date, or undefined. */
function parseDate(date) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > 31) return undefined;
  return [year, month, day];
}

/**
 * The local `YYYY-MM-DD` of a moment in milliseconds since the epoch (a BigInt, as
 * the WIT `s64` arrives), with the platform's offset from `clock`.
 */
function localDate(ms) {
  const local = ms + BigInt(utcOffsetSeconds()) * 1000n;
  return new Date(Number(local)).toISOString().slice(0, 10);
}

/** The day's text for one animal. */
function reading(animal, date) {
  const [, month, day] = parseDate(date);
  const h = fnv1a(`${date}/${animal.key}`);
  const outlook = OUTLOOKS[h % OUTLOOKS.length];
  const direction = LUCKY[(h >>> 8) % LUCKY.length];
  const number = ((h >>> 16) % 9) + 1;
  return `【属${animal.name} ${month}月${day}日】${outlook}。吉利方位：${direction}，幸运数字：${number}。`;
}

/** The tip of the day from the content library, or '' if there is none. */
function tipOfTheDay(date) {
  const n = count(TIPS);
  if (n === 0) return '';
  const item = getItem(TIPS, fnv1a(date) % n); // option<item>: the record or undefined
  return item === undefined ? '' : `小贴士：${item.text}`;
}

function findAnimal(text) {
  let word = keyword(text);
  if (word.startsWith('属')) word = word.slice(1);
  if (word.endsWith('年')) word = word.slice(0, -1);
  return ANIMALS.find((a) => a.name === word || a.key.toUpperCase() === word);
}

function help() {
  return `回复生肖设置您的属相：${ANIMALS.map((a) => a.name).join('、')}（也可回复英文，如 rat）。`;
}

/**
 * Run a host call whose WIT result may be an error; turn that error into a
 * `host-failure`, so the partner reads what failed instead of a crash.
 */
function hostCall(what, call) {
  try {
    return call();
  } catch (e) {
    if (e instanceof ModuleError || e.payload === undefined) throw e;
    // e.payload is the WIT error: `{ tag: 'unavailable', val: '…' }`, `{ tag: 'full' }`…
    const detail = e.payload.val === undefined ? e.payload.tag : `${e.payload.tag}: ${e.payload.val}`;
    log('warn', `${what} failed: ${detail}`);
    throw new ModuleError('host-failure', `${what} failed: ${detail}`);
  }
}

export const module = {
  describe() {
    return {
      name: 'shengxiao-js',
      version: '1.0.0',
      description: '生肖运势：按订户的属相（属性 zodiac）每日推送，回复生肖即可设置（JavaScript 示例模块）',
      services: [SERVICE],
    };
  },

  bulletin(request) {
    checkService(request.service);
    if (parseDate(request.date) === undefined) {
      throw new ModuleError('invalid-request', `bad date ${JSON.stringify(request.date)}, want YYYY-MM-DD`);
    }
    const tip = tipOfTheDay(request.date);
    const [, month, day] = parseDate(request.date);
    return {
      tag: 'keyed',
      val: {
        attribute: ATTRIBUTE,
        variants: ANIMALS.map((animal) => ({ key: animal.key, text: reading(animal, request.date) + tip })),
        fallback: `【${month}月${day}日生肖运势】您还没有设置属相哦！${help()}`,
      },
    };
  },

  onMo(message) {
    checkService(message.service);
    const word = keyword(message.text);
    const animal = findAnimal(message.text);
    if (animal !== undefined) {
      hostCall('set-attribute', () => setAttribute(message.subscriber, ATTRIBUTE, animal.key));
      const today = localDate(message.receivedAtMs);
      return `已将您的属相设为${animal.name}，明天起每天为您推送。今日运势：${reading(animal, today)}`;
    }
    if (word === '查询') {
      const key = hostCall('get-attribute', () => getAttribute(message.subscriber, ATTRIBUTE));
      const stored = ANIMALS.find((a) => a.key === key);
      return stored === undefined ? `您还没有设置属相。${help()}` : `您的属相是${stored.name}。`;
    }
    if (MORE_WORDS.has(word)) {
      // next-u64 is a u64: a BigInt. Mix with BigInt, then convert the small result.
      const number = Number(nextU64() % 100n);
      return `今日幸运数字：${number}。回复“再来”再抽一次。`;
    }
    // kv.incr takes and returns an s64: a BigInt both ways (`1n`, not `1`).
    const n = hostCall('kv.incr', () => incr(`mo:${message.subscriber}`, 1n));
    log('debug', `message #${n} from ${message.subscriber}`);
    return `已收到第${n}条留言，谢谢！${help()}`;
  },

  onSubscribe(event) {
    checkService(event.service);
    return `欢迎订阅生肖运势！${help()}`;
  },

  onUnsubscribe(_event) {
    return undefined;
  },
};
