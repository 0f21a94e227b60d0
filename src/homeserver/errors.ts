/**
 * The one error type a handler throws to produce a Matrix error response. The router turns it into
 * `{ errcode, error, ...extra }` with `status`; anything else becomes `500 M_UNKNOWN`.
 */
export class MatrixError extends Error {
  override readonly name = "MatrixError";
  readonly status: number;
  readonly errcode: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(status: number, errcode: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.errcode = errcode;
    this.extra = extra;
    this.headers = headers;
  }

  /** The JSON body of the error response. */
  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const badJson = (msg = "Malformed JSON body"): MatrixError => new MatrixError(400, "M_BAD_JSON", msg);
export const notJson = (msg = "Request body is not valid JSON"): MatrixError => new MatrixError(400, "M_NOT_JSON", msg);
export const missingParam = (msg: string): MatrixError => new MatrixError(400, "M_MISSING_PARAM", msg);
export const invalidParam = (msg: string): MatrixError => new MatrixError(400, "M_INVALID_PARAM", msg);
export const forbidden = (msg = "Forbidden"): MatrixError => new MatrixError(403, "M_FORBIDDEN", msg);
export const notFound = (msg = "Not found"): MatrixError => new MatrixError(404, "M_NOT_FOUND", msg);
export const unrecognized = (msg = "Unrecognized request", status = 404): MatrixError =>
  new MatrixError(status, "M_UNRECOGNIZED", msg);
export const missingToken = (): MatrixError => new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
export const unknownToken = (softLogout = false): MatrixError =>
  new MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token", { soft_logout: softLogout });
export const userInUse = (): MatrixError => new MatrixError(400, "M_USER_IN_USE", "User ID already taken");
export const invalidUsername = (msg = "Invalid username"): MatrixError => new MatrixError(400, "M_INVALID_USERNAME", msg);
export const tooLarge = (msg = "Request too large"): MatrixError => new MatrixError(413, "M_TOO_LARGE", msg);
export const unknown = (msg = "Internal server error", status = 500): MatrixError => new MatrixError(status, "M_UNKNOWN", msg);
export const limitExceeded = (retryAfterMs: number): MatrixError =>
  new MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", { retry_after_ms: retryAfterMs }, {
    "Retry-After": String(Math.ceil(retryAfterMs / 1000)),
  });
export const unsupportedRoomVersion = (v: string): MatrixError =>
  new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Room version ${v} is not supported`);
export const guestAccessForbidden = (): MatrixError => new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access forbidden");
