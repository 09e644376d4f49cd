"""mymod is your own Python module: main.go runs its functions from Go.

It imports slither only for the @slither.thread_safe mark, so plain Python
(python -m unittest, pytest) imports and runs it too, with the slither
package on PYTHONPATH (`slither python path --package`) or installed.
"""

import slither


@slither.thread_safe
def score(items):
    """Scores a batch of sentences: one result per item, in order.

    thread_safe tells Slither's Auto route that this function may run on
    many threads at once in the embedded free-threaded interpreter: it
    touches nothing but its arguments. Without the mark, Auto sends it to a
    process pool.
    """
    out = []
    for sentence in items:
        words = sentence.split()
        longest = ""
        for w in words:
            if len(w) > len(longest):
                longest = w
        out.append({"words": len(words), "longest": longest})
    return out
