/* Compile-time checks that the on-disk structs have the sizes and field
 * offsets docs/image-format.md gives. A failing assert here means a format
 * change: bump CKPT_FORMAT_VERSION and update the document. */
#include <stddef.h>

#include "image/format.h"

#define SIZE(t, n) _Static_assert(sizeof(struct t) == (n), #t " size changed")
#define OFF(t, f, n) _Static_assert(offsetof(struct t, f) == (n), #t "." #f " moved")

SIZE(ckpt_image_header, 320);
OFF(ckpt_image_header, magic, 0);
OFF(ckpt_image_header, format_version, 8);
OFF(ckpt_image_header, header_size, 12);
OFF(ckpt_image_header, arch, 16);
OFF(ckpt_image_header, kernel_release, 32);
OFF(ckpt_image_header, ckpt_version, 104);
OFF(ckpt_image_header, generation, 128);
OFF(ckpt_image_header, time_ns, 136);
OFF(ckpt_image_header, pid, 144);
OFF(ckpt_image_header, nthreads, 148);
OFF(ckpt_image_header, section_table_offset, 152);
OFF(ckpt_image_header, section_count, 160);
OFF(ckpt_image_header, section_table_crc, 164);
OFF(ckpt_image_header, xcr0, 168);
OFF(ckpt_image_header, cpuid_1_ecx, 176);
OFF(ckpt_image_header, cpuid_7_ebx, 180);
OFF(ckpt_image_header, image_size, 184);
OFF(ckpt_image_header, parent_generation, 192);
OFF(ckpt_image_header, monotonic_ns, 200);
OFF(ckpt_image_header, boottime_ns, 208);
OFF(ckpt_image_header, reserved, 216);
OFF(ckpt_image_header, flags, 312);
OFF(ckpt_image_header, header_crc, 316);

SIZE(ckpt_section, 32);
OFF(ckpt_section, type, 0);
OFF(ckpt_section, count, 4);
OFF(ckpt_section, offset, 8);
OFF(ckpt_section, length, 16);
OFF(ckpt_section, crc, 24);
OFF(ckpt_section, reserved, 28);

SIZE(ckpt_rlimit, 16);
SIZE(ckpt_process, 1464);
SIZE(ckpt_epoll_entry, 16);
SIZE(ckpt_socket, 288);
OFF(ckpt_socket, peerlen, 152);
OFF(ckpt_socket, peer, 160);
SIZE(ckpt_timerfd, 48);
SIZE(ckpt_inotify_watch, 16);
OFF(ckpt_inotify_watch, mask, 4);
OFF(ckpt_inotify_watch, path_str, 8);
OFF(ckpt_process, pid, 0);
OFF(ckpt_process, ppid, 4);
OFF(ckpt_process, umask, 8);
OFF(ckpt_process, personality, 12);
OFF(ckpt_process, start_code, 16);
OFF(ckpt_process, end_code, 24);
OFF(ckpt_process, start_data, 32);
OFF(ckpt_process, end_data, 40);
OFF(ckpt_process, start_brk, 48);
OFF(ckpt_process, brk, 56);
OFF(ckpt_process, start_stack, 64);
OFF(ckpt_process, arg_start, 72);
OFF(ckpt_process, arg_end, 80);
OFF(ckpt_process, env_start, 88);
OFF(ckpt_process, env_end, 96);
OFF(ckpt_process, auxv, 104);
OFF(ckpt_process, auxv_words, 1128);
OFF(ckpt_process, rseq_offset, 1132);
OFF(ckpt_process, rseq_size, 1136);
OFF(ckpt_process, rseq_sig, 1140);
OFF(ckpt_process, restore_info_addr, 1144);
OFF(ckpt_process, agent_fd, 1152);
OFF(ckpt_process, nrlimits, 1156);
OFF(ckpt_process, rlimits, 1160);
OFF(ckpt_process, cwd_str, 1416);
OFF(ckpt_process, exe_str, 1420);
OFF(ckpt_process, comm, 1424);
OFF(ckpt_process, vdso_start, 1440);

SIZE(ckpt_restore_info, 72);

SIZE(ckpt_thread, 112);
OFF(ckpt_thread, tid, 0);
OFF(ckpt_thread, flags, 4);
OFF(ckpt_thread, fs_base, 8);
OFF(ckpt_thread, gs_base, 16);
OFF(ckpt_thread, frame, 24);
OFF(ckpt_thread, clear_child_tid, 32);
OFF(ckpt_thread, robust_head, 40);
OFF(ckpt_thread, robust_len, 48);
OFF(ckpt_thread, altstack_sp, 56);
OFF(ckpt_thread, altstack_size, 64);
OFF(ckpt_thread, altstack_flags, 72);
OFF(ckpt_thread, rseq_registered, 76);
OFF(ckpt_thread, rseq_addr, 80);
OFF(ckpt_thread, comm, 88);

SIZE(ckpt_sigaction, 32);
OFF(ckpt_sigaction, handler, 0);
OFF(ckpt_sigaction, flags, 8);
OFF(ckpt_sigaction, restorer, 16);
OFF(ckpt_sigaction, mask, 24);

SIZE(ckpt_area, 80);
OFF(ckpt_area, start, 0);
OFF(ckpt_area, end, 8);
OFF(ckpt_area, prot, 16);
OFF(ckpt_area, kind, 20);
OFF(ckpt_area, flags, 24);
OFF(ckpt_area, name_str, 28);
OFF(ckpt_area, file_offset, 32);
OFF(ckpt_area, dev, 40);
OFF(ckpt_area, ino, 48);
OFF(ckpt_area, file_size, 56);
OFF(ckpt_area, mtime_ns, 64);
OFF(ckpt_area, pages_saved, 72);

SIZE(ckpt_fd, 88);
OFF(ckpt_fd, fd, 0);
OFF(ckpt_fd, kind, 4);
OFF(ckpt_fd, open_flags, 8);
OFF(ckpt_fd, fd_flags, 12);
OFF(ckpt_fd, offset, 16);
OFF(ckpt_fd, dev, 24);
OFF(ckpt_fd, ino, 32);
OFF(ckpt_fd, size, 40);
OFF(ckpt_fd, mtime_ns, 48);
OFF(ckpt_fd, path_str, 56);
OFF(ckpt_fd, aux, 60);
OFF(ckpt_fd, pipe_id, 64);
OFF(ckpt_fd, data_off, 72);
OFF(ckpt_fd, data_len, 80);

SIZE(ckpt_tree, 16);
OFF(ckpt_tree, pgid, 0);
OFF(ckpt_tree, sid, 4);
OFF(ckpt_tree, nprocs, 8);
SIZE(ckpt_zombie, 8);
OFF(ckpt_zombie, pid, 0);
OFF(ckpt_zombie, status, 4);
SIZE(ckpt_fd_share, 16);
OFF(ckpt_fd_share, fd, 0);
OFF(ckpt_fd_share, owner_pid, 4);
OFF(ckpt_fd_share, owner_fd, 8);

SIZE(ckpt_lock, 32);
OFF(ckpt_lock, fd, 0);
OFF(ckpt_lock, kind, 4);
OFF(ckpt_lock, write, 8);
OFF(ckpt_lock, start, 16);
OFF(ckpt_lock, end, 24);

SIZE(ckpt_timer, 64);
OFF(ckpt_timer, kind, 0);
OFF(ckpt_timer, id, 4);
OFF(ckpt_timer, clockid, 8);
OFF(ckpt_timer, signo, 12);
OFF(ckpt_timer, notify, 16);
OFF(ckpt_timer, notify_tid, 20);
OFF(ckpt_timer, sigval, 24);
OFF(ckpt_timer, value_sec, 32);
OFF(ckpt_timer, value_nsec, 40);
OFF(ckpt_timer, interval_sec, 48);
OFF(ckpt_timer, interval_nsec, 56);

SIZE(ckpt_siginfo, 136);
OFF(ckpt_siginfo, tid, 0);
OFF(ckpt_siginfo, signo, 4);
OFF(ckpt_siginfo, info, 8);

SIZE(ckpt_shared_file, 56);
OFF(ckpt_shared_file, dev, 0);
OFF(ckpt_shared_file, ino, 8);
OFF(ckpt_shared_file, size, 16);
OFF(ckpt_shared_file, mtime_ns, 24);
OFF(ckpt_shared_file, path_str, 32);
OFF(ckpt_shared_file, data_off, 40);
OFF(ckpt_shared_file, data_len, 48);

SIZE(ckpt_thread_sched, 144);
OFF(ckpt_thread_sched, tid, 0);
OFF(ckpt_thread_sched, flags, 4);
OFF(ckpt_thread_sched, nice, 8);
OFF(ckpt_thread_sched, cpus, 16);

SIZE(ckpt_page_chunk, 24);
OFF(ckpt_page_chunk, magic, 0);
OFF(ckpt_page_chunk, area, 4);
OFF(ckpt_page_chunk, addr, 8);
OFF(ckpt_page_chunk, npages, 16);
OFF(ckpt_page_chunk, crc, 20);

SIZE(ckpt_page_hash, 24);
OFF(ckpt_page_hash, addr, 0);
OFF(ckpt_page_hash, lo, 8);
OFF(ckpt_page_hash, hi, 16);
SIZE(ckpt_chunk_entry, 40);
OFF(ckpt_chunk_entry, chunk, 0);
OFF(ckpt_chunk_entry, offset, 24);
OFF(ckpt_chunk_entry, zlen, 32);
OFF(ckpt_chunk_entry, reserved, 36);
SIZE(ckpt_page_run, 16);
OFF(ckpt_page_run, addr, 0);
OFF(ckpt_page_run, npages, 8);
