"""The slither package outside a pool: a user module imports, and its
functions run, in plain Python under unittest (stdlib only, so the same
tests run under any CPython >= 3.10, free-threaded or not).

Run from the repository: PYTHONPATH=python python3 -m unittest discover -s python/tests
(python/outside_test.go runs it with the free-threaded build and /usr/bin/python3)."""

import os
import threading
import unittest
from unittest import mock

import slither
import usermod


class OutsideAPool(unittest.TestCase):
    def setUp(self):
        slither.session().clear()

    def test_context_says_not_in_a_pool(self):
        c = slither.context()
        self.assertFalse(c.in_pool)
        self.assertEqual(c.pool, "none")
        self.assertIsNone(c.worker_id)
        self.assertIsNone(c.session_id)
        self.assertEqual(c.pid, os.getpid())
        self.assertIsNone(c.trace_id)
        self.assertIsNone(c.span_id)
        self.assertEqual(usermod.where([1]), [["none", False, None, None]])

    def test_thread_safe_marks_and_the_function_runs(self):
        self.assertIs(usermod.squares.__slither_thread_safe__, True)
        self.assertFalse(getattr(usermod.prices, "__slither_thread_safe__", False))
        self.assertEqual(usermod.squares([1, 2, 3]), [1, 4, 9])

    def test_failed_marks_one_item(self):
        self.assertEqual(usermod.squares([2, -1]), [4, {"__slither_failed__": "negative: -1"}])

    def test_session_is_a_plain_dict_per_thread(self):
        s = slither.session()
        self.assertIs(type(s), dict)
        self.assertIs(s, slither.session(), "one dict for the thread's life")
        self.assertEqual(usermod.running_total([1, 2]), [1, 3])
        self.assertEqual(usermod.running_total([4]), [7], "kept between calls, like a session on its worker")

        seen = []
        t = threading.Thread(target=lambda: seen.append((slither.session(), usermod.running_total([10]))))
        t.start()
        t.join()
        self.assertEqual(seen[0][1], [10], "another thread has its own dict")
        self.assertIsNot(seen[0][0], s)

        s.clear()
        self.assertEqual(usermod.running_total([5]), [5], "clear() starts a fresh session")

    def test_refs_work_on_their_thread(self):
        handles = usermod.load_model(["a", "b"])
        self.assertEqual(usermod.model_name(handles), ["a", "b"])

        errors = []

        def elsewhere():
            try:
                slither.deref(handles[0])
            except slither.RefError as e:
                errors.append(str(e))
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
        self.assertEqual(len(errors), 1)
        self.assertIn("another thread", errors[0])

        slither.release(handles[0])
        with self.assertRaisesRegex(slither.RefError, "released"):
            slither.deref(handles[0])
        self.assertEqual(slither.deref(handles[1]), {"name": "b"})
        with self.assertRaises(TypeError):
            slither.deref({"not": "a ref"})

    def test_view_and_host_call_say_not_in_a_pool(self):
        with self.assertRaisesRegex(slither.NotInPool, r"slither.view\('prices'\): not running in a Slither pool"):
            usermod.prices([1])
        with self.assertRaisesRegex(slither.NotInPool, r"slither.host_call\('h'\): not running in a Slither pool"):
            slither.host_call("h", 1)
        self.assertTrue(issubclass(slither.NotInPool, RuntimeError))

    def test_views_can_be_stubbed(self):
        table = {1: 9.5, 2: 3.0}
        with mock.patch("slither.view", side_effect=lambda name, id: table[id]):
            self.assertEqual(usermod.prices([2, 1]), [3.0, 9.5])

    def test_no_host_module_is_needed(self):
        self.assertIsNone(slither._host)
        for name in slither.__all__:
            self.assertTrue(hasattr(slither, name), name)


if __name__ == "__main__":
    unittest.main()
