/** The SDK version, sent in `hello` (keep equal to package.json's `version`). */
export declare const SDK_VERSION = "0.1.0";
