"""Plain-Python tests of mymod: run them with
`PYTHONPATH=$(slither python path --package) python3 -m unittest test_mymod`
(main_test.go runs them from `go test` too)."""

import unittest

import slither

import mymod


class ScoreTest(unittest.TestCase):
    def test_one_result_per_item(self):
        got = mymod.score(["a bb ccc", "", "  spaced   out  "])
        self.assertEqual(
            got,
            [
                {"words": 3, "longest": "ccc"},
                {"words": 0, "longest": ""},
                {"words": 2, "longest": "spaced"},
            ],
        )

    def test_first_longest_word_wins(self):
        self.assertEqual(mymod.score(["ab cd"]), [{"words": 2, "longest": "ab"}])

    def test_marked_thread_safe_outside_a_pool(self):
        # The decorator still marks the function, and nothing here runs in a pool.
        self.assertTrue(getattr(mymod.score, "__slither_thread_safe__", False))
        self.assertFalse(slither.context().in_pool)


if __name__ == "__main__":
    unittest.main()
