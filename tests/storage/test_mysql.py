"""Optuna's storage on MySQL (the MariaDB at 127.0.0.1:3306): the study's lock, which keeps
"check the budget, then create a trial" whole across workers, is a MySQL named lock. MariaDB
answers GET_LOCK with a negative timeout with NULL, no lock, at once: every sweep there ended
in "the study's lock ... was lost in an outage"."""

from __future__ import annotations

import threading

from rnnlab.storage.adapter import open_storage
from rnnlab.storage.locks import study_lock


def test_the_study_lock_on_mysql_is_held_by_one_worker_at_a_time(mysql_database):
    open_storage(mysql_database)
    inside, waiting, let_go, second_in = (threading.Event() for _ in range(4))

    def first() -> None:
        with study_lock(mysql_database, "s"):
            inside.set()
            let_go.wait(60)

    def second() -> None:
        inside.wait(60)
        waiting.set()
        with study_lock(mysql_database, "s"):
            second_in.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (first, second)]
    for t in threads:
        t.start()
    assert waiting.wait(60)
    assert not second_in.wait(1.0), "two holders of one study's lock"
    with study_lock(mysql_database, "another study"):  # other studies' locks are their own
        pass
    let_go.set()
    assert second_in.wait(60), "the lock was not handed on"
    for t in threads:
        t.join(60)
