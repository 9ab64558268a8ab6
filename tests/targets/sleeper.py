"""e2e target for any Python, 2.7 included: write READY_FILE (argv[1]) and sleep until killed.

Used where the stacks do not matter: unsupported versions, privilege checks.
"""
import os
import sys
import time


def sleep_forever():
    while True:
        time.sleep(1000)


def main():
    path = sys.argv[1]
    tmp = path + ".tmp"
    f = open(tmp, "w")
    f.write("%d\n" % os.getpid())
    f.close()
    os.rename(tmp, path)
    sleep_forever()


if __name__ == "__main__":
    main()
