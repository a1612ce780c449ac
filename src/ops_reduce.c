/* ops_reduce.c */
