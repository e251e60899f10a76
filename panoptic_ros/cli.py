"""Command line entry point ``panoptic``: one subcommand per tool, imported only when chosen."""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='panoptic', description=__doc__)
    parser.add_subparsers(dest='command', required=True)
    args = parser.parse_args(argv)
    return 0 if args else 1


if __name__ == '__main__':
    sys.exit(main())
