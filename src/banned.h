/*
 * Functions that are too easy to misuse. Including this header last turns
 * any use of them into a compile error, as git's banned.h does.
 */
#ifndef AG_BANNED_H
#define AG_BANNED_H

#define AG_BANNED(func) sorry_##func##_is_banned

#undef strcpy
#define strcpy(x, y) AG_BANNED(strcpy)
#undef strcat
#define strcat(x, y) AG_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) AG_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) AG_BANNED(strncat)
#undef sprintf
#define sprintf(...) AG_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) AG_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) AG_BANNED(strtok)
#undef gmtime
#define gmtime(t) AG_BANNED(gmtime)
#undef localtime
#define localtime(t) AG_BANNED(localtime)
#undef atoi
#define atoi(s) AG_BANNED(atoi)
#undef atol
#define atol(s) AG_BANNED(atol)
#undef gets
#define gets(s) AG_BANNED(gets)

#endif
