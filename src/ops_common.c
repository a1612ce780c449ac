/* ops_common.c */
