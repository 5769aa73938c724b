/* The final stage blob (see src/restore/final/), embedded in ckpt-restore. */
	.section .rodata
	.balign 4096
	.global final_blob_start, final_blob_end
final_blob_start:
	.incbin "final.bin"
final_blob_end:
	.section .note.GNU-stack,"",@progbits
