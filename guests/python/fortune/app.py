"""fortune-py: a Tongdao content module written in Python.

It serves the service "FP" (每日吉语):

* bulletin     - one fortune per day, picked deterministically from the push date,
                 so a push that the host asks for again (e.g. after a restart) gets
                 the same text;
* on_mo        - "MORE" / "再来" draws a fresh fortune with the host's randomness;
                 anything else is counted per subscriber in the key-value store and
                 acknowledged;
* on_subscribe - a welcome text;
* on_unsubscribe - nothing.

Build it with guests/python/build.sh (componentize-py 0.25.1). The `wit_world`
package imported below does not exist on disk: componentize-py generates it from
wit/v1.0.0 at build time. To see it (e.g. for an editor), run
`componentize-py -d wit/v1.0.0 -w content-module bindings <dir>`.

The error rule: a business error is reported by raising
`componentize_py_types.Err(<a ModuleError case>)`. componentize-py turns exactly
that into the `err` side of the WIT `result<_, module-error>`; the host records it
and sends nothing. Any other exception escaping a call is a trap, which the host
counts as a crash of this module version.
"""

from componentize_py_types import Err

from wit_world import exports
from wit_world.imports import kv, log
from wit_world.imports import random as host_random  # keep the stdlib name free
from wit_world.imports.kv import KvError_Unavailable
from wit_world.imports.log import Level
from wit_world.imports.types import (
    Bulletin,
    Bulletin_Single,
    BulletinRequest,
    Mo,
    ModuleError_HostFailure,
    ModuleError_InvalidRequest,
    ModuleInfo,
    SubscriptionEvent,
)

SERVICE = "FP"

FORTUNES = [
    "今日宜早起，好运在路上。",
    "心有所向，步步生花。",
    "贵人在侧，凡事顺遂。",
    "小事用心，大事自成。",
    "笑口常开，福气自来。",
    "天晴心也晴，万事皆可期。",
    "慢一点也无妨，方向对了就好。",
    "今日财运平稳，量入为出更安心。",
    "与人为善，善意终会回到身边。",
    "好好吃饭，好好睡觉，就是好运。",
]

# Texts that ask for another fortune (compared after strip(); MORE in any case).
MORE_WORDS = {"MORE", "再来"}


def _stable_index(text: str, n: int) -> int:
    """FNV-1a (32 bit) of the UTF-8 bytes, mod n.

    Python's built-in hash() of a str is randomized per process (and, in a
    componentize-py build, its seed is baked in at build time), so it must not be
    used for anything that has to be the same on every call and every build.
    """
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h % n


def _is_date(s: str) -> bool:
    """True for `YYYY-MM-DD` (shape only; the host sends real dates)."""
    return (
        len(s) == 10
        and s[4] == "-"
        and s[7] == "-"
        and (s[0:4] + s[5:7] + s[8:10]).isdigit()
        and s[0:4].isascii()
    )


def _check_service(service: str) -> None:
    if service != SERVICE:
        # A business error: returned to the host as module-error, not a crash.
        raise Err(ModuleError_InvalidRequest(f"unknown service code {service!r}"))


def _random_fortune() -> str:
    return FORTUNES[host_random.next_u64() % len(FORTUNES)]


class Module(exports.Module):
    def describe(self) -> ModuleInfo:
        return ModuleInfo(
            name="fortune-py",
            version="1.0.0",
            description="每日吉语：每天一条好运签，回复“再来”再抽一签（Python 示例模块）",
            services=[SERVICE],
        )

    def bulletin(self, request: BulletinRequest) -> Bulletin:
        _check_service(request.service)
        if not _is_date(request.date):
            raise Err(ModuleError_InvalidRequest(f"bad date {request.date!r}, want YYYY-MM-DD"))
        fortune = FORTUNES[_stable_index(request.date, len(FORTUNES))]
        return Bulletin_Single(f"【吉语】{request.date}：{fortune}")

    def on_mo(self, message: Mo) -> str | None:
        _check_service(message.service)
        text = message.text.strip()  # also strips full-width spaces (U+3000)
        if text.upper() in MORE_WORDS:
            return f"【吉语】再来一签：{_random_fortune()}"

        key = f"mo:{message.subscriber}"
        try:
            count = kv.incr(key, 1)
        except Err as e:
            # A host capability failed: say so as a business error (the host sends
            # nothing), instead of letting the exception escape as a crash.
            err = e.value
            detail = err.value if isinstance(err, KvError_Unavailable) else type(err).__name__
            log.write(Level.WARN, f"kv.incr({key}) failed: {detail}")
            raise Err(ModuleError_HostFailure(f"kv incr failed: {detail}"))
        log.write(Level.DEBUG, f"message #{count} from {message.subscriber}")
        return f"已收到第{count}条留言，谢谢！回复“再来”再抽一签。"

    def on_subscribe(self, event: SubscriptionEvent) -> str | None:
        _check_service(event.service)
        return "欢迎订阅每日吉语！每天一条好运签，回复“再来”可随时再抽一签。"

    def on_unsubscribe(self, event: SubscriptionEvent) -> str | None:
        return None
