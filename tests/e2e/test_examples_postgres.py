"""The ksu and kaspGO contracts of test_examples_contract.py again, with the examples' queue on
a private PostgreSQL (QUEUE_DRIVER=postgres, DATABASE_URL): a file of its own so each file
stays well inside ctest's time limit. The contract classes are reached through the module
(contract.KsuContract), so they are not collected and run a second time here."""
import os
import unittest

import pgserver
import test_examples_contract as contract
import th


class OnPostgres(pgserver.ServerPerClass):
    """Mixin: the same contract with the example's queue on a private PostgreSQL
    (QUEUE_DRIVER=postgres, DATABASE_URL), each test on fresh tables."""
    def setUp(self):
        self.pg.psql("DROP TABLE IF EXISTS taskhost_jobs, taskhost_meta CASCADE")
        contract.EXTRA_ENV.update({"QUEUE_DRIVER": "postgres", "DATABASE_URL": self.pg.dsn})

    def tearDown(self):
        contract.EXTRA_ENV.clear()


@unittest.skipUnless(pgserver.available(), "PostgreSQL 15 server binaries not installed (scripts/setup)")
class KsuContractOnPostgres(OnPostgres, contract.KsuContract):
    pass


@unittest.skipUnless(pgserver.available(), "PostgreSQL 15 server binaries not installed (scripts/setup)")
class KaspgoContractOnPostgres(OnPostgres, contract.KaspgoContract):
    def test_the_queue_is_in_postgres(self):
        """The example takes its driver from QUEUE_DRIVER and DATABASE_URL: the job is a row of
        taskhost_jobs, and no sqlite queue file is made in the project."""
        project = th.copy_example("job-queue")
        s = contract.job_queue({"WORK_MIN_MS": "1", "WORK_MAX_MS": "1"}, project)
        try:
            port = s.ports()[0]
            self.assertEqual(contract.enqueue(port, "in-pg")[0], 202)
            contract.poll(lambda: contract.state(port, "in-pg") == "done", timeout=10)
            self.assertEqual(self.pg.psql("SELECT queue, state FROM taskhost_jobs WHERE jid = 'in-pg'").strip(),
                             "app:jobs|4")                            # 4: done
            self.assertFalse(os.path.exists(os.path.join(project, "data")))
        finally:
            self.assertEqual(s.stop(), 0, s.log())


if __name__ == "__main__":
    th.main()
