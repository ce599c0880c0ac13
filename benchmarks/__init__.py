"""`make bench`: measured figures, each reported against a baseline from the same run."""
