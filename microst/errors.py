"""Errors a user can fix (a missing file, a wrong option), and how command-line tools report them."""
import functools
import sys


class UserError(Exception):
    """A problem with the user's input. Its message is one line: which file or option, what is wrong,
    what to do. Command-line tools print it and exit with status 2."""


def cli_main(main):
    """Wrap a command-line main(argv=None): a UserError becomes one line on stderr and exit status 2."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    return run
