/* ops_elementwise.c */
