"""The turn pacer (workers/pacer.py): admitted sockets go on a few per turn of the event
loop, in the order they came, and a turn between two groups is left for other work."""

from __future__ import annotations

import asyncio

from workers.pacer import TurnPacer

PER_TURN = 4


class TurnCounter:
    """Counts the turns of the running loop: a callback that re-schedules itself once per
    turn (asyncio and uvloop run, in a turn, only what was ready when it began)."""

    def __init__(self) -> None:
        self.turn = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def test_callers_go_on_a_few_per_turn_in_arrival_order() -> None:
    pacer, turns = TurnPacer(PER_TURN), TurnCounter()
    went: list[tuple[int, int]] = []  # (caller, turn it went on in)

    async def caller(n: int) -> None:
        await pacer.turn()
        went.append((n, turns.turn))

    await asyncio.gather(*(caller(n) for n in range(30)))
    turns.stop()
    assert [n for n, _ in went] == list(range(30))
    per_turn: dict[int, int] = {}
    for _, turn in went:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= PER_TURN
    assert len(per_turn) >= 30 // PER_TURN


async def test_another_task_gets_a_turn_between_two_groups() -> None:
    pacer = TurnPacer(PER_TURN)
    order: list[str] = []

    async def caller(n: int) -> None:
        await pacer.turn()
        order.append(f"caller {n}")

    async def other() -> None:  # a notice: it becomes ready while the callers wait
        await asyncio.sleep(0)
        order.append("other")

    await asyncio.gather(*(caller(n) for n in range(3 * PER_TURN)), other())
    assert order.index("other") < order.index(f"caller {2 * PER_TURN}")


async def test_a_cancelled_waiter_takes_no_place_and_the_rest_go_on() -> None:
    pacer = TurnPacer(1)
    went: list[int] = []

    async def caller(n: int) -> None:
        await pacer.turn()
        went.append(n)

    tasks = [asyncio.create_task(caller(n)) for n in range(5)]
    await asyncio.sleep(0)  # all have called: the first went on, four wait
    assert pacer.waiting == 4
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert went == [0, 1, 3, 4]
    assert pacer.waiting == 0


async def test_a_lone_caller_does_not_wait_for_a_turn() -> None:
    pacer, turns = TurnPacer(PER_TURN), TurnCounter()
    started = turns.turn
    for _ in range(PER_TURN):
        await pacer.turn()
    turns.stop()
    assert turns.turn == started  # no suspension at all
