/* ops_shape.c */
