/* ops_linalg.c */
