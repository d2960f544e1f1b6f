// Names that cross module boundaries.

/** A cloudlet's name: lower-case letters, digits and dashes, starting with a letter. */
export const NODE_NAME = /^[a-z][a-z0-9-]{0,30}$/;
