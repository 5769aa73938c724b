"""stdin_lines.py SLEEP_MS: reads its stdin line by line (Python buffers
8 KiB at a time), printing a running checksum of each line, SLEEP_MS
apart. Given a file as stdin (`ckpt start ... < file`), a restart given
the file again must read on from where the program was at the
checkpoint: reading it from its start after the buffered bytes repeats
lines."""
import sys
import time
import zlib


def main():
    sleep_ms = int(sys.argv[1])
    crc, n = 0, 0
    for line in sys.stdin:
        crc = zlib.crc32(line.encode(), crc)
        print(f"line {n} len {len(line)} crc {crc:08x}", flush=True)
        n += 1
        time.sleep(sleep_ms / 1000)
    print(f"done lines={n} crc {crc:08x}", flush=True)


if __name__ == "__main__":
    main()
